r"""Lesion-grouped k-fold cross-validation of a build recipe: the yardstick for recipe
decisions, which never touches the test split.

  python -m benchmarks.crossval --build_flagfile=configs/ham10000.flags --folds=5 \
      --work_dir=build/cv --output_json=build/cv/crossval.json

The recipe's test split (the one its plain build scores once) is left out of every fold. The
other lesions are dealt into k class-stratified folds; fold i's build trains on the others
(minus a validation share) and scores fold i as its test split, with every variant, the
parity gate and the referral threshold, exactly as a plain build scores its test split.
Finished folds are reused, so a killed run continues where it stopped; `--norun` only
summarises the folds that finished.

The summary gives each variant's balanced accuracy over the folds (mean, min-max and a 95%
t-interval), and the referral threshold two ways on held-out lesions: as each fold's build
fit it (on its own validation share), and fit on the out-of-fold scores of the other folds
(hundreds of serious cases, none of them used for any decision).
"""

import json
import os
import subprocess
import sys
import time
from typing import Dict, List

import numpy as np
from absl import app
from absl import flags

from benchmarks import common

FLAGS = flags.FLAGS
VARIANTS = ("float32", "int8", "int8_tta8")


def define_flags() -> None:
  flags.DEFINE_string("build_flagfile", "", "The recipe: a pipeline.build flagfile (its "
                      "--output_dir is replaced by one folder per fold).")
  flags.DEFINE_integer("folds", 5, "Number of folds (k).", lower_bound=2)
  flags.DEFINE_multi_string("build_flag", [], "A pipeline.build flag added to every fold's "
                            "build, after the flagfile (repeatable): the recipe change under "
                            "test, e.g. --build_flag=--set=data.train_fraction=0.5.")
  flags.DEFINE_string("work_dir", "build/cv", "Where the fold builds go (fold_0, fold_1, ...).")
  flags.DEFINE_bool("run", True, "Run the folds that have not finished; --norun only "
                    "summarises the finished ones.")
  flags.DEFINE_string("output_json", "", "JSON report (default: WORK_DIR/crossval.json).")


RECIPE_FILE = "recipe.json"  # What WORK_DIR's folds were built with.


def claim_work_dir(work_dir: str, flagfile: str, build_flags: List[str], folds: int) -> None:
  """Records the recipe of WORK_DIR's folds, or checks that it is the one asked for: finished
  folds are reused, so folds of another recipe must never be mixed in.

  Raises:
    PipelineError: WORK_DIR holds folds of another recipe or fold count.
  """
  from pipeline import atomic  # pylint: disable=g-import-not-at-top
  from pipeline.errors import PipelineError  # pylint: disable=g-import-not-at-top
  with open(flagfile, encoding="utf-8") as f:
    recipe = {"flagfile": f.read(), "build_flag": list(build_flags), "folds": folds}
  path = os.path.join(work_dir, RECIPE_FILE)
  if os.path.isfile(path):
    before = atomic.read_json(path, "the cross-validation recipe")
    if before != recipe:
      changed = [k for k in recipe if before.get(k) != recipe[k]]
      raise PipelineError(f"--work_dir={work_dir} holds folds of another recipe "
                          f"({', '.join(changed)} differ); give another --work_dir")
    return
  os.makedirs(work_dir, exist_ok=True)
  atomic.write_json(path, recipe)


def write_fold_splits(flagfile: str, folds: int, work_dir: str, log) -> List[str]:
  """Writes WORK_DIR/splits_fold_I.csv for every fold; returns their paths.

  The recipe's own data stage runs first (WORK_DIR/split): its splits.csv names the test split
  every fold leaves out, exactly as the plain build of the recipe makes it.
  """
  from pipeline import atomic  # pylint: disable=g-import-not-at-top
  from pipeline.config import BuildConfig, CONFIG_FILE  # pylint: disable=g-import-not-at-top
  from pipeline.data import splits as splits_lib  # pylint: disable=g-import-not-at-top
  from pipeline.data.dataset import Example  # pylint: disable=g-import-not-at-top
  from pipeline.data.readers import read_csv  # pylint: disable=g-import-not-at-top
  paths = [os.path.join(work_dir, f"splits_fold_{i}.csv") for i in range(folds)]
  if all(os.path.isfile(p) for p in paths):
    return paths
  split_dir = os.path.join(work_dir, "split")
  log(f"the recipe's split: {split_dir}")
  _build(["--flagfile=" + flagfile, f"--output_dir={split_dir}", "--stop_after=data",
          "--overwrite"], split_dir)
  config = BuildConfig.load(os.path.join(split_dir, CONFIG_FILE))
  rows, _ = read_csv(os.path.join(split_dir, splits_lib.FILE_NAME), splits_lib.COLUMNS)
  examples = [Example(key=r["key"], label=r["label"], group=r["group"],
                      given_split="test" if r["split"] == "test" else "") for r in rows]
  assignments = splits_lib.cross_validation_folds(
      examples, folds, config.data.val_fraction, config.data.test_fraction, config.seed)
  for path, assignment in zip(paths, assignments):
    atomic.write_text(path, splits_lib.assignment_csv(examples, assignment))
  return paths


def _build(args: List[str], out: str) -> None:
  """Runs pipeline.build with `args`, its output appended to OUT.log."""
  from pipeline.errors import PipelineError  # pylint: disable=g-import-not-at-top
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  log_path = out.rstrip(os.sep) + ".log"
  with open(log_path, "a", encoding="utf-8") as f:
    code = subprocess.call([sys.executable, "-m", "pipeline.build", *args], stdout=f,
                           stderr=subprocess.STDOUT)
  if code:
    raise PipelineError(f"the build of {out} failed (exit {code}); see {log_path}")


def run_fold(flagfile: str, extra: List[str], split_file: str, out: str) -> None:
  """Runs (or resumes) one fold's build: the flagfile, then `extra` flags."""
  args = [f"--flagfile={flagfile}", *extra, f"--split_file={split_file}", f"--output_dir={out}",
          f"--assets_dir={os.path.join(out, 'android_assets')}"]
  if os.path.exists(os.path.join(out, "build_state.json")):
    args.append("--resume")
  from pipeline.errors import PipelineError  # pylint: disable=g-import-not-at-top
  try:
    _build(args, out)
  except PipelineError:
    if not finished(out):  # A failed parity gate is a result, recorded in report.json.
      raise


def finished(out: str) -> bool:
  path = os.path.join(out, "report.json")
  if not os.path.isfile(path):
    return False
  with open(path, encoding="utf-8") as f:
    return "gate" in json.load(f)


def interval(values: List[float]) -> dict:
  """Mean, min-max and the 95% t-interval of the mean over folds (None with one fold)."""
  from scipy import stats  # pylint: disable=g-import-not-at-top
  v = np.asarray(values, float)
  ci = None
  if len(v) > 1 and np.ptp(v) == 0:
    ci = [float(v[0])] * 2  # Equal folds: the t-interval has zero width.
  elif len(v) > 1:
    ci = [float(np.clip(x, 0, 1))  # Every figure here is a share.
          for x in stats.t.interval(0.95, len(v) - 1, loc=v.mean(), scale=stats.sem(v))]
  return {"mean": float(v.mean()), "min": float(v.min()), "max": float(v.max()), "ci95": ci,
          "folds": len(v)}


def out_of_fold_scores(fold_dir: str) -> dict:
  """The fold's shipped int8 model on its held-out lesions: probabilities, true classes and
  each image's source (the --data_dir folder it came from), and the serious-class scores and
  truth (empty without serious classes)."""
  from pipeline import referral as referral_lib  # pylint: disable=g-import-not-at-top
  from pipeline.config import model_file_name  # pylint: disable=g-import-not-at-top
  from pipeline.runner import load_model_file  # pylint: disable=g-import-not-at-top
  config, split = common.build_split(fold_dir, "test")
  runner, meta = load_model_file(os.path.join(fold_dir, model_file_name("int8")))
  labels = list(meta["labels"])
  serious = list(config.referral.classes(config.data.data_format, labels))
  probs = runner.predict(split.pixels())
  y = np.asarray(split.labels)  # The build's labels.txt order, which its model embeds.
  truth = np.isin(np.asarray(labels)[y], serious)
  return {"scores": referral_lib.serious_score(probs, labels, serious) if serious else None,
          "serious": truth, "probs": probs, "y": y,
          "source": np.array([_source(p, config.data.data_dir) for p in split.paths])}


def _source(path: str, data_dirs: str) -> str:
  """The --data_dir folder holding `path`, by name (.../ham10000_extra/images: ham10000_extra)."""
  path = os.path.abspath(path)
  for d in data_dirs.split(","):
    d = os.path.abspath(d)
    if path.startswith(d + os.sep):
      name = os.path.basename(d)
      return os.path.basename(os.path.dirname(d)) if name in ("images", "img") else name
  return "other"


def per_source(oof: Dict[int, dict]) -> Dict[str, dict]:
  """int8 balanced accuracy on each source's held-out images: per fold, then over folds."""
  from pipeline import metrics  # pylint: disable=g-import-not-at-top
  out = {}
  for source in sorted({s for o in oof.values() for s in o["source"]}):
    picks = [(o, o["source"] == source) for o in oof.values()]
    out[source] = {"images": int(sum(m.sum() for _, m in picks)),
                   "balanced_accuracy": interval([
                       metrics.argmax_balanced_accuracy(o["y"][m], o["probs"][m])
                       for o, m in picks if m.any()])}
  return out


def cross_fit_referral(oof: Dict[int, dict], sensitivity: float) -> List[dict]:
  """Per fold: the threshold fit (conformal rank) on the other folds' out-of-fold serious
  scores, and what it refers of this fold's lesions."""
  from pipeline import referral as referral_lib  # pylint: disable=g-import-not-at-top
  rows = []
  for fold, mine in sorted(oof.items()):
    others = [o for f, o in oof.items() if f != fold]
    scores = np.concatenate([o["scores"] for o in others])
    serious = np.concatenate([o["serious"] for o in others])
    threshold = referral_lib.fit_threshold(scores, serious, sensitivity)
    point = referral_lib.operating_point(mine["scores"], mine["serious"], threshold)
    rows.append({"fold": fold, "threshold": threshold, "fit_on_serious": int(serious.sum()),
                 **point})
  return rows


def summarise(work_dir: str, folds: int, rescore: bool = True) -> dict:
  """The finished folds' figures (see the module docstring); `rescore` runs each fold's int8
  model on its held-out lesions again, for the figures per source and the cross-fit referral
  (False: the folds' reports alone)."""
  from pipeline.errors import PipelineError  # pylint: disable=g-import-not-at-top
  reports = {}
  for i in range(folds):
    out = os.path.join(work_dir, f"fold_{i}")
    if finished(out):
      with open(os.path.join(out, "report.json"), encoding="utf-8") as f:
        reports[i] = json.load(f)
  if not reports:
    raise PipelineError(f"{work_dir}: no finished fold yet; run without --norun")
  variants = [v for v in VARIANTS if all(v in r["models"] for r in reports.values())]
  payload = {"folds": folds, "finished": sorted(reports), "variants": {}}
  for v in variants:
    payload["variants"][v] = {
        m: interval([r["models"][v][m] for r in reports.values()])
        for m in ("balanced_accuracy", "accuracy")}
  payload["per_fold"] = [{
      "fold": i, "held_out": reports[i]["data"]["totals"]["test"],
      "balanced_accuracy": {v: reports[i]["models"][v]["balanced_accuracy"] for v in variants},
      "gate_passed": reports[i]["gate"]["passed"],
      "minutes": sum(reports[i]["stage_seconds"].values()) / 60,
      "stage_seconds": reports[i]["stage_seconds"],
      "referral_own": (reports[i].get("referral") or {}).get("test", {}).get("int8")}
      for i in sorted(reports)]
  target = next((r["referral"]["target_sensitivity"] for r in reports.values()
                 if r.get("referral")), None)
  if not rescore:
    return payload
  common.progress("scoring each fold's int8 model on its held-out lesions ...")
  oof = {i: out_of_fold_scores(os.path.join(work_dir, f"fold_{i}")) for i in reports}
  payload["sources"] = per_source(oof)
  if target and len(reports) > 1:
    rows = cross_fit_referral(oof, target)
    payload["referral"] = {"target_sensitivity": target, "cross_fit": rows,
                           "sensitivity": interval([r["sensitivity"] for r in rows]),
                           "specificity": interval([r["specificity"] for r in rows]),
                           "own_sensitivity": interval([p["referral_own"]["sensitivity"]
                                                        for p in payload["per_fold"]])}
  return payload


def markdown(payload: dict) -> List[str]:
  pct = lambda s: (f"{100 * s['mean']:.1f}% ({100 * s['min']:.1f}-{100 * s['max']:.1f})" +
                   (f", 95% CI {100 * s['ci95'][0]:.1f}-{100 * s['ci95'][1]:.1f}"
                    if s["ci95"] else ""))
  lines = [f"# Cross-validation: {len(payload['finished'])} of {payload['folds']} folds", "",
           "Each fold's build scored its held-out lesions (never the recipe's test split).", "",
           "| variant | balanced accuracy, mean (min-max), 95% CI | accuracy |", "|---|---|---|"]
  for v, s in payload["variants"].items():
    lines.append(f"| {v} | {pct(s['balanced_accuracy'])} | {pct(s['accuracy'])} |")
  lines += ["", "| fold | held-out images | " + " | ".join(payload["variants"]) +
            " | gate | referral sensitivity / specificity (own threshold) | minutes |",
            "|---|---:|" + "---:|" * len(payload["variants"]) + "---|---|---:|"]
  for p in payload["per_fold"]:
    own = p["referral_own"]
    referral = (f"{100 * own['sensitivity']:.1f}% / {100 * own['specificity']:.1f}% of "
                f"{own['positives']} serious" if own else "n/a")
    lines.append(f"| {p['fold']} | {p['held_out']} | " + " | ".join(
        f"{100 * b:.1f}%" for b in p["balanced_accuracy"].values()) +
        f" | {'passed' if p['gate_passed'] else 'FAILED'} | {referral} | {p['minutes']:.1f} |")
  if len(payload.get("sources", {})) > 1:
    lines += ["", "int8 balanced accuracy by the folder the held-out images came from:", "",
              "| source | held-out images | balanced accuracy, mean (min-max), 95% CI |",
              "|---|---:|---|"]
    lines += [f"| {name} | {s['images']} | {pct(s['balanced_accuracy'])} |"
              for name, s in payload["sources"].items()]
  r = payload.get("referral")
  if r:
    lines += ["", f"Referral at {r['target_sensitivity']:.0%} target sensitivity, on each fold's "
              "held-out lesions:", "",
              f"- fit by the fold's build on its validation share: sensitivity "
              f"{pct(r['own_sensitivity'])};",
              f"- fit on the other folds' out-of-fold scores: sensitivity "
              f"{pct(r['sensitivity'])}, specificity {pct(r['specificity'])}."]
  return lines


def measure_from_flags() -> dict:
  from pipeline.errors import PipelineError  # pylint: disable=g-import-not-at-top
  if FLAGS.run:
    if not os.path.isfile(FLAGS.build_flagfile):
      raise PipelineError(f"--build_flagfile={FLAGS.build_flagfile}: no such file")
    claim_work_dir(FLAGS.work_dir, FLAGS.build_flagfile, FLAGS.build_flag, FLAGS.folds)
    split_files = write_fold_splits(FLAGS.build_flagfile, FLAGS.folds, FLAGS.work_dir,
                                    common.progress)
    t0, done = time.time(), 0
    for i, split_file in enumerate(split_files):
      out = os.path.join(FLAGS.work_dir, f"fold_{i}")
      if finished(out):
        continue
      common.progress(f"fold {i + 1}/{FLAGS.folds}: building {out} (log: {out}.log)")
      run_fold(FLAGS.build_flagfile, FLAGS.build_flag, split_file, out)
      done += 1
      left = sum(not finished(os.path.join(FLAGS.work_dir, f"fold_{j}"))
                 for j in range(FLAGS.folds))
      eta = (time.time() - t0) / done * left
      common.progress(f"fold {i + 1}/{FLAGS.folds}: done; {left} to go, ETA {eta / 60:.0f} min")
  return summarise(FLAGS.work_dir, FLAGS.folds)


def main(argv: List[str]) -> None:
  common.main("benchmarks.crossval", argv, measure_from_flags, markdown,
              FLAGS.output_json or os.path.join(FLAGS.work_dir, "crossval.json"), "")


if __name__ == "__main__":
  define_flags()
  app.run(main)
