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

The summary (benchmarks/crossval_summary.py) gives each variant's balanced accuracy over the
folds (mean, min-max and a 95% t-interval), the same per source folder, and the referral
threshold two ways on held-out lesions: as each fold's build fit it (on its own validation
share), and fit on the out-of-fold scores of the other folds (hundreds of serious cases, none
of them used for any decision).
"""

import os
import subprocess
import sys
import time
from typing import List

from absl import app
from absl import flags

from benchmarks import common
from benchmarks import crossval_summary as summary_lib

FLAGS = flags.FLAGS


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
    if not summary_lib.finished(out):  # A failed parity gate is a result, recorded in report.json.
      raise


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
      if summary_lib.finished(out):
        continue
      common.progress(f"fold {i + 1}/{FLAGS.folds}: building {out} (log: {out}.log)")
      run_fold(FLAGS.build_flagfile, FLAGS.build_flag, split_file, out)
      done += 1
      left = sum(not summary_lib.finished(os.path.join(FLAGS.work_dir, f"fold_{j}"))
                 for j in range(FLAGS.folds))
      eta = (time.time() - t0) / done * left
      common.progress(f"fold {i + 1}/{FLAGS.folds}: done; {left} to go, ETA {eta / 60:.0f} min")
  return summary_lib.summarise(FLAGS.work_dir, FLAGS.folds)


def main(argv: List[str]) -> None:
  common.main("benchmarks.crossval", argv, measure_from_flags, summary_lib.markdown,
              FLAGS.output_json or os.path.join(FLAGS.work_dir, "crossval.json"), "")


if __name__ == "__main__":
  define_flags()
  app.run(main)
