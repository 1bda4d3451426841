r"""Ensembles of fine-tunes: do independently fine-tuned models, averaged in probability, score
what one of them cannot?

For each --build_dir (a finished build), the members are:
- shipped: the build's model_float.keras as it is (its kept fine-tune epoch and classifier);
- one per --student=NAME=WORK_DIR: the student that `benchmarks.distill --work_dir=WORK_DIR`
  trained on this build (its last epoch);
- one per --snapshot=EPOCH: the build's own fine-tune at its best_val or last epoch (a
  snapshot ensemble: no training beyond the build's);
each but shipped with its classifier re-fit by cRT as the build did
(`benchmarks.readout.crt_classifier`, one view, the build's C: distill's own re-fit).
Every member, and the mean of the probabilities of every group of two or more members, is
scored on the validation split (one view) and the test split (one view, and the mean over the
8 dihedral views: an ensemble of M members with TTA8 costs 8M invokes). Over several builds:
mean (min-max), the paired change against shipped, and each ensemble's gain over the mean of
its own members. Nothing is fit on the test split; nothing is trained (only cRT's seconds).

  python -m benchmarks.ensemble --build_dir=build/ham1 --build_dir=build/ham2 \
      --build_dir=build/ham3 --student=seed2=distill_work --output_json=ensemble.json
"""

import itertools
import os
import time
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from absl import app
from absl import flags

from benchmarks import common
from benchmarks import readout

FLAGS = flags.FLAGS
SHIPPED = readout.SHIPPED


def define_flags() -> None:
  """Defined when run, not on import (see benchmarks.readout)."""
  flags.DEFINE_multi_string("build_dir", [], "A finished build's output directory (repeatable).")
  flags.DEFINE_multi_string("student", [], "NAME=WORK_DIR: the students a benchmarks.distill "
                            "run trained in WORK_DIR, one per build (repeatable).")
  flags.DEFINE_multi_enum("snapshot", [], list(readout.EPOCHS), "A member: the build's own "
                          "fine-tune at this epoch, cRT re-fit (repeatable).")
  flags.DEFINE_string("output_json", "ensemble.json", "JSON report path.")
  flags.DEFINE_string("output_md", "", "Markdown report path (default: beside the JSON).")


def parse_students(specs: List[str]) -> Dict[str, str]:
  """{name: work_dir} of --student=NAME=WORK_DIR values.

  Raises:
    PipelineError: a value without "=", a name used twice or "shipped", a missing folder.
  """
  from pipeline.errors import PipelineError  # pylint: disable=g-import-not-at-top
  out = {}
  for spec in specs:
    name, sep, work_dir = spec.partition("=")
    if not (sep and name and work_dir):
      raise PipelineError(f"--student={spec}: expected NAME=WORK_DIR (a benchmarks.distill "
                          "--work_dir), e.g. --student=seed2=runs/distill_work")
    if name in out or name == SHIPPED:
      raise PipelineError(f"--student={spec}: the name {name} is taken; give each student its "
                          f"own name (not {SHIPPED})")
    if not os.path.isdir(work_dir):
      raise PipelineError(f"--student={spec}: {work_dir} is not a folder; give the --work_dir "
                          "of a benchmarks.distill run")
    out[name] = work_dir
  return out


def check_students(students: Dict[str, str], build_dirs: Sequence[str]) -> None:
  """Each student's work dir holds a student of each build, before anything is scored.

  Raises:
    PipelineError: a build that a --student's benchmarks.distill run did not train on.
  """
  from pipeline.errors import PipelineError  # pylint: disable=g-import-not-at-top
  from pipeline.train import fit  # pylint: disable=g-import-not-at-top
  for name, root in students.items():
    for build_dir in build_dirs:
      ckpt = fit.checkpoint_dir(common.work_folder(root, build_dir), "distill")
      if not os.path.isdir(ckpt):
        raise PipelineError(f"--student={name}={root}: no student of --build_dir={build_dir} "
                            f"(no {ckpt}); train it with benchmarks.distill "
                            f"--build_dir={build_dir} --work_dir={root}, or drop that build")


def members(students: Dict[str, str], snapshots: Sequence[str] = ()
            ) -> Dict[str, Optional[Tuple[Optional[str], str]]]:
  """{name: (a student's work root, or None for the build's own fine-tune; epoch)}, shipped
  None, in order: shipped, the snapshots, the students."""
  out = {SHIPPED: None}
  out.update({f"finetune {epoch}": (None, epoch) for epoch in snapshots})
  out.update({name: (root, "last") for name, root in students.items()})
  return out


def member_probabilities(build_dir: str, sources: dict, progress=common.progress) -> tuple:
  """({member: {"val": [N, K], "test": [8, N, K]}}, split): each member's probabilities
  (`sources`: `members()`)."""
  from pipeline.train import fit  # pylint: disable=g-import-not-at-top
  config, bundle, split = readout.build_data(build_dir)
  norm = config.model.normalization
  probs = {}
  for name, source in sources.items():
    t0 = time.time()
    if source is None:
      model = readout.load_model(build_dir)
      classify = readout.head_classifier(model)
    else:
      root, epoch = source
      if root is None:  # The build's own fine-tune (the mean of its runs, with several).
        model = readout.load_model(build_dir, epoch)
      else:
        model = readout.load_model(build_dir)
        fit.restore_epoch(model, common.work_folder(root, build_dir), "distill", epoch)
      train_x = readout.features(model, split["train"].pixels(), norm, 1)
      classify = readout.crt_classifier(train_x, split["train"].labels, len(bundle.labels),
                                        config.train.crt_c)
    probs[name] = {s: np.stack([classify(x) for x in readout.features(
        model, split[s].pixels(), norm, views)]) for s, views in (("val", 1), ("test", 8))}
    progress(f"ensemble: {build_dir}: {name} scored ({time.time() - t0:.0f} s)")
  return probs, split


def score_build(build_dir: str, sources: dict, progress=common.progress) -> dict:
  """{"build", "n", "rows": {member or "a + b": {"val", "test", "test_tta8"}},
  "members": {row: [member, ...]}}."""
  from pipeline import metrics  # pylint: disable=g-import-not-at-top
  probs, split = member_probabilities(build_dir, sources, progress)
  names = list(probs)
  groups = [(n,) for n in names] + [g for size in range(2, len(names) + 1)
                                    for g in itertools.combinations(names, size)]
  score = lambda p, s: metrics.argmax_balanced_accuracy(split[s].labels, p)
  rows, members = {}, {}
  for group in groups:
    key = " + ".join(group)
    mean = {s: np.mean([probs[n][s] for n in group], axis=0) for s in ("val", "test")}
    rows[key] = {"val": score(mean["val"][0], "val"), "test": score(mean["test"][0], "test"),
                 "test_tta8": score(mean["test"].mean(axis=0), "test")}
    members[key] = list(group)
  best = max((k for k in rows if len(members[k]) > 1), key=lambda k: rows[k]["test_tta8"],
             default=None)
  progress(f"ensemble: {build_dir}: " + "; ".join(
      f"{k} test {rows[k]['test']:.1%}, TTA8 {rows[k]['test_tta8']:.1%}"
      for k in (SHIPPED, best) if k))
  return {"build": build_dir, "n": {s: len(v) for s, v in split.items()}, "rows": rows,
          "members": members}


def markdown(payload: dict) -> List[str]:
  builds = payload["builds"]
  others = [f"the build's fine-tune at its {e} epoch (finetune {e})"
            for e in payload.get("snapshots", ())]
  others += [f"the benchmarks.distill student in `{work}` ({name})"
             for name, work in payload["students"].items()]
  lines = ["# Ensembles of fine-tunes, on finished builds", "",
           f"{len(builds)} build(s). Members: shipped (the build's model_float.keras), "
           f"{', '.join(others)}; each but shipped with cRT re-fit as the build did. "
           "A row with \"+\" averages its members' probabilities. Balanced accuracy; change: "
           "paired against shipped, mean (min to max).", ""
           ] + readout.paired_table("model", payload["summary"], builds) + [
           "", "Each ensemble against the mean of its own members, build by build (points):", "",
           "| ensemble | test | test TTA8 | val |", "|---|---:|---:|---:|"]
  for key, parts in builds[0]["members"].items():
    if len(parts) > 1:
      cells = [readout.signed_range(readout.member_gains(builds, key, parts, figure))
               for figure in ("test", "test_tta8", "val")]
      lines.append(f"| {key} | " + " | ".join(cells) + " |")
  return lines


def measure_from_flags() -> dict:
  from pipeline.errors import PipelineError  # pylint: disable=g-import-not-at-top
  if not FLAGS.build_dir or not (FLAGS.student or FLAGS.snapshot):
    raise PipelineError("give at least one --build_dir=BUILD (a finished build) and a member "
                        "beside its shipped model: --student=NAME=WORK_DIR (a "
                        "benchmarks.distill --work_dir) or --snapshot=best_val")
  students = parse_students(FLAGS.student)
  check_students(students, FLAGS.build_dir)
  sources = members(students, sorted(set(FLAGS.snapshot)))
  builds = []
  for i, build_dir in enumerate(FLAGS.build_dir, 1):
    builds.append(score_build(build_dir, sources))
    common.progress(f"ensemble: {i}/{len(FLAGS.build_dir)} builds done")
  return {"students": students, "snapshots": sorted(set(FLAGS.snapshot)), "builds": builds,
          "summary": readout.summarize(builds)}


def main(argv: List[str]) -> None:
  common.main("benchmarks.ensemble", argv, measure_from_flags, markdown, FLAGS.output_json,
              FLAGS.output_md)


if __name__ == "__main__":
  define_flags()
  app.run(main)
