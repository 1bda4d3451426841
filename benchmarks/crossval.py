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

A change to a late stage (QAT length, export settings) need not retrain every fold: with
--from_work_dir each fold starts as a copy of the same finished fold of another
cross-validation and is rebuilt from --rerun_from with the --build_flag changes, so both
sides share each fold's fine-tuned float model and the summary gives paired differences:

  python -m benchmarks.crossval --build_flagfile=configs/ham10000.flags --folds=5 \
      --from_work_dir=build/cv --rerun_from=qat --build_flag=--qat_epochs=1 \
      --work_dir=build/cv_qat1

The summary (benchmarks/crossval_summary.py; JSON, Markdown and a plot beside them) gives
each variant's balanced accuracy over the folds (mean, min-max and a 95% t-interval), the
same per source folder, and the referral threshold two ways on held-out lesions: as each
fold's build fit it (on its own validation share), and fit on the out-of-fold scores of the
other folds (hundreds of serious cases, none of them used for any decision).
"""

import os
import shutil
import subprocess
import sys
import time
from typing import List, Optional

from absl import app
from absl import flags

from benchmarks import common
from benchmarks import crossval_plot
from benchmarks import crossval_summary as summary_lib
from pipeline.config.choices import STAGES

FLAGS = flags.FLAGS


def define_flags() -> None:
  flags.DEFINE_string("build_flagfile", "", "The recipe: a pipeline.build flagfile (its "
                      "--output_dir is replaced by one folder per fold).")
  flags.DEFINE_integer("folds", 5, "Number of folds (k).", lower_bound=2)
  flags.DEFINE_multi_string("build_flag", [], "A pipeline.build flag added to every fold's "
                            "build, after the flagfile (repeatable): the recipe change under "
                            "test, e.g. --build_flag=--set=data.train_fraction=0.5.")
  flags.DEFINE_string("work_dir", "build/cv", "Where the fold builds go (fold_0, fold_1, ...).")
  flags.DEFINE_list("only_folds", [], "Build only these folds (e.g. 0,1,2: three paired folds "
                    "for a quick comparison); the others stay for a later run.")
  flags.DEFINE_bool("run", True, "Run the folds that have not finished; --norun only "
                    "summarises the finished ones.")
  flags.DEFINE_string("output_json", "", "JSON report (default: WORK_DIR/crossval.json).")
  flags.DEFINE_string("from_work_dir", "", "Start each fold as a copy of the same finished "
                      "fold of this cross-validation (same recipe and folds) and redo it from "
                      "--rerun_from with the --build_flag changes: a paired comparison of a "
                      "late-stage change at a fraction of a fold's cost.")
  flags.DEFINE_enum("rerun_from", "qat", STAGES[1:], "With --from_work_dir: the first stage "
                    "each fold redoes.")
  flags.DEFINE_string("compare_to", "", "Another cross-validation of the same folds (default: "
                      "--from_work_dir): the summary adds each fold's difference from it.")


RECIPE_FILE = summary_lib.RECIPE_FILE


def claim_work_dir(work_dir: str, flagfile: str, build_flags: List[str], folds: int,
                   start: Optional[dict] = None) -> None:
  """Records the recipe of WORK_DIR's folds, or checks that it is the one asked for: finished
  folds are reused, so folds of another recipe must never be mixed in.

  Raises:
    PipelineError: WORK_DIR holds folds of another recipe or fold count.
  """
  from pipeline import atomic  # pylint: disable=g-import-not-at-top
  from pipeline.errors import PipelineError  # pylint: disable=g-import-not-at-top
  with open(flagfile, encoding="utf-8") as f:
    recipe = {"flagfile": f.read(), "build_flag": list(build_flags), "folds": folds}
  if start:  # Folds copied from another cross-validation and redone from a stage.
    recipe["start"] = start
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


def run_fold(flagfile: str, extra: List[str], split_file: str, out: str,
             rerun_from: str = "") -> None:
  """Runs (or resumes) one fold's build: the flagfile, then `extra` flags; with `rerun_from`,
  redoes OUT (a copy of another fold, see `copy_fold`) from that stage."""
  args = [f"--flagfile={flagfile}", *extra, f"--split_file={split_file}", f"--output_dir={out}",
          f"--assets_dir={os.path.join(out, 'android_assets')}"]
  if rerun_from:
    args.append(f"--rerun_from={rerun_from}")
  elif os.path.exists(os.path.join(out, "build_state.json")):
    args.append("--resume")
  from pipeline.errors import PipelineError  # pylint: disable=g-import-not-at-top
  try:
    _build(args, out)
  except PipelineError:
    if not summary_lib.finished(out):  # A failed parity gate is a result, recorded in report.json.
      raise


def copy_fold(base_fold: str, out: str) -> None:
  """Makes OUT a copy of the finished build BASE_FOLD, less its report: OUT counts as finished
  only once its redo writes a new one (a killed redo starts over). Written aside, then renamed."""
  if os.path.isdir(out):
    return
  partial = out.rstrip(os.sep) + ".partial"
  shutil.rmtree(partial, ignore_errors=True)
  shutil.copytree(base_fold, partial, symlinks=True)
  for name in ("report.json", "report.md"):
    os.remove(os.path.join(partial, name))
  os.rename(partial, out)


def base_split_files(base_dir: str, flagfile: str, folds: int) -> List[str]:
  """The fold split files of the cross-validation in BASE_DIR, which must be of the same
  flagfile and fold count (the copied folds' data stage read them).

  Raises:
    PipelineError: BASE_DIR is not such a cross-validation.
  """
  from pipeline import atomic  # pylint: disable=g-import-not-at-top
  from pipeline.errors import PipelineError  # pylint: disable=g-import-not-at-top
  path = os.path.join(base_dir, RECIPE_FILE)
  if not os.path.isfile(path):
    raise PipelineError(f"--from_work_dir={base_dir}: no cross-validation there ({RECIPE_FILE} "
                        "is missing); run benchmarks.crossval into it first")
  base = atomic.read_json(path, "the cross-validation recipe")
  with open(flagfile, encoding="utf-8") as f:
    if base.get("flagfile") != f.read() or base.get("folds") != folds:
      raise PipelineError(f"--from_work_dir={base_dir} holds folds of another flagfile or fold "
                          f"count; give its --build_flagfile and --folds={base.get('folds')}")
  return [os.path.join(os.path.abspath(base_dir), f"splits_fold_{i}.csv")
          for i in range(folds)]


def selected_folds(folds: int, only: List[str]) -> List[int]:
  """The folds to build: all of them, or those --only_folds names.

  Raises:
    PipelineError: a name that is not a fold number below `folds`.
  """
  from pipeline.errors import PipelineError  # pylint: disable=g-import-not-at-top
  if not only:
    return list(range(folds))
  bad = [f for f in only if not (f.strip().isdigit() and int(f) < folds)]
  if bad:
    raise PipelineError(f"--only_folds: {', '.join(bad)} is not a fold of --folds={folds}; give "
                        f"numbers from 0 to {folds - 1}")
  return sorted({int(f) for f in only})


def measure_from_flags() -> dict:
  from pipeline.errors import PipelineError  # pylint: disable=g-import-not-at-top
  base_dir = FLAGS.from_work_dir
  if FLAGS["rerun_from"].present and not base_dir:
    raise PipelineError("--rerun_from redoes the folds of --from_work_dir; give both, or "
                        "neither for folds built from the start")
  chosen = selected_folds(FLAGS.folds, FLAGS.only_folds)
  if FLAGS.run:
    if not os.path.isfile(FLAGS.build_flagfile):
      raise PipelineError(f"--build_flagfile={FLAGS.build_flagfile}: no such file")
    start = base_dir and {"from_work_dir": os.path.abspath(base_dir),
                          "rerun_from": FLAGS.rerun_from}
    claim_work_dir(FLAGS.work_dir, FLAGS.build_flagfile, FLAGS.build_flag, FLAGS.folds, start)
    if base_dir:
      split_files = base_split_files(base_dir, FLAGS.build_flagfile, FLAGS.folds)
    else:
      split_files = write_fold_splits(FLAGS.build_flagfile, FLAGS.folds, FLAGS.work_dir,
                                      common.progress)
    t0, done = time.time(), 0
    for i, split_file in enumerate(split_files):
      out = os.path.join(FLAGS.work_dir, f"fold_{i}")
      if i not in chosen or summary_lib.finished(out):
        continue
      if base_dir:
        base_fold = os.path.join(base_dir, f"fold_{i}")
        if not summary_lib.finished(base_fold):
          common.progress(f"fold {i + 1}/{FLAGS.folds}: skipped until {base_fold} has finished")
          continue
        copy_fold(base_fold, out)
      common.progress(f"fold {i + 1}/{FLAGS.folds}: building {out} (log: {out}.log)")
      run_fold(FLAGS.build_flagfile, FLAGS.build_flag, split_file, out,
               FLAGS.rerun_from if base_dir else "")
      done += 1
      left = sum(not summary_lib.finished(os.path.join(FLAGS.work_dir, f"fold_{j}"))
                 for j in chosen)
      eta = (time.time() - t0) / done * left
      common.progress(f"fold {i + 1}/{FLAGS.folds}: done; {left} to go, ETA {eta / 60:.0f} min")
  payload = summary_lib.summarise(FLAGS.work_dir, FLAGS.folds,
                                  compare_to=FLAGS.compare_to or base_dir)
  payload["plot"] = os.path.splitext(_output_json())[0] + ".png"
  crossval_plot.plot(payload, payload["plot"])
  return payload


def _output_json() -> str:
  return FLAGS.output_json or os.path.join(FLAGS.work_dir, "crossval.json")


def main(argv: List[str]) -> None:
  common.main("benchmarks.crossval", argv, measure_from_flags, summary_lib.markdown,
              _output_json(), "")


if __name__ == "__main__":
  define_flags()
  app.run(main)
