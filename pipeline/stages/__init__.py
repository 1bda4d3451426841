"""The build: ten stages, each a function (config, state) -> state, run by one loop.

  data      stages/data.py      load, split; labels.txt, splits.csv, data_report.json
  transfer  stages/training.py  new head on the frozen backbone
  finetune  stages/training.py  top backbone layers; model_float.keras
  crt       stages/training.py  class-balanced classifier re-fit on the frozen features
  qat       stages/training.py  quantization-aware training (tfmot)
  export    stages/export.py    int8, int8_tta8, int8_ptq, float16, float32 .tflite
  metadata  stages/metadata.py  embedded labels/normalization, read back; Task Library and
                                MediaPipe Tasks check
  evaluate  stages/evaluate.py  every variant on the test split; referral threshold
  gate      stages/gate.py      int8-vs-float32 parity verdict (enforced after it is saved)
  assets    stages/assets.py    latency, model card, the drop-in app folder
"""

import contextlib
import datetime
import os
import shutil
import time
from typing import Callable, NamedTuple, Optional, Tuple

from pipeline import atomic
from pipeline import provenance
from pipeline import report as report_lib
from pipeline.config import CONFIG_FILE, STAGES, BuildConfig, RunOptions
from pipeline.errors import PipelineError
from pipeline.stages import assets, data, evaluate, export, gate, metadata, training
from pipeline.stages import state as state_lib
from pipeline.tf_compat import keras, tf
from pipeline.train import cluster


class Stage(NamedTuple):
  name: str
  run: Callable  # (config, state) -> state
  # --resume of a finished stage: reload its result instead of redoing it, when `saved`
  # (files of the output directory) exist. Stages without one always rerun (seconds).
  restore: Optional[Callable] = None
  saved: Tuple[str, ...] = ()
  # Runs after the report is written: a stage may stop the build on its own figures.
  check: Optional[Callable] = None


PIPELINE = (
    Stage("data", data.run),
    Stage("transfer", training.transfer, training.restore_transfer,
          (training.TRANSFER_WEIGHTS + ".index",)),
    Stage("finetune", training.finetune, training.restore_finetune, (training.FLOAT_MODEL,)),
    Stage("crt", training.crt_stage, training.restore_crt,
          (training.FLOAT_MODEL, training.CRT_REPORT)),
    Stage("qat", training.qat_stage, training.restore_qat, (training.QAT_WEIGHTS + ".index",)),
    Stage("export", export.run, export.restore, (export.MANIFEST,)),
    Stage("metadata", metadata.run),
    Stage("evaluate", evaluate.run),
    Stage("gate", gate.run, check=gate.enforce),
    Stage("assets", assets.run),
)
assert tuple(s.name for s in PIPELINE) == STAGES


def run(config: BuildConfig, options: RunOptions, log: Optional[Callable[[str], None]] = None,
        flags_text: Optional[str] = None) -> dict:
  """Runs the stages up to `options.stop_after`; resumable with `options.resume`.

  `flags_text` (the command line's flags in --flagfile form) is saved as flags.txt once a
  --resume or --rerun_from has been checked against the build it continues.

  Returns:
    The build report (also written after every stage as report.json and report.md).

  Raises:
    PipelineError: bad input, a failed check, or a failed parity gate.
  """
  log = log or Log()
  task, strategy, options, log = _join_cluster(config, options, log)
  if not task or task.is_chief:  # Other tasks write to a scratch folder inside the chief's.
    _claim_output_dir(options)
  progress = state_lib.Progress(config, options)  # Checks --resume before anything changes.
  _prepare(config, options, flags_text)
  started = datetime.datetime.now().isoformat(timespec="seconds")
  state = state_lib.BuildState(options=options, log=log, started=started,
                               provenance=provenance.build_info(started),
                               training=state_lib.previous_training(options), strategy=strategy,
                               cluster=task and {"task": task.name, "tasks": task.tasks,
                                                 "replicas": strategy.num_replicas_in_sync})
  for stage in PIPELINE:
    t0 = time.time()
    with cluster.peer_failures(task) if task else contextlib.nullcontext():
      if options.resume and progress.done(stage.name) and stage.restore and all(
          os.path.exists(state.path(f)) for f in stage.saved):
        state = stage.restore(config, state)
        state.log(f"{stage.name}: reusing the finished stage (--resume)")
      else:
        state = stage.run(config, state)
        progress.finish(stage.name, time.time() - t0)
    if task and stage.name == cluster.LAST_SHARED_STAGE != options.stop_after:
      state = training.leave_cluster(config, state)  # The chief goes on alone.
    report = state_lib.report(config, state, progress.stage_seconds)
    report_lib.write_report(state.path("report.json"), state.path("report.md"), report)
    if stage.check:
      stage.check(config, state)
    if stage.name == options.stop_after:
      break
  if task:
    with cluster.peer_failures(task):
      cluster.finish(strategy)  # Every task leaves together: none is taken for a crashed one.
    if not task.is_chief:
      shutil.rmtree(options.output_dir, ignore_errors=True)
      state.log("done: training finished with the chief, which wrote the build")
      return report
  state.log(report_lib.stage_time_line(report))
  if options.stop_after == STAGES[-1]:
    state.log(f"done: reports in {state.path('report.md')}")
  return report


# Files that mark a folder as a build's output directory.
_BUILD_MARKERS = (state_lib.PROGRESS_FILE, CONFIG_FILE, "report.json")


def _claim_output_dir(options: RunOptions) -> None:
  """A fresh build writes into an empty or new folder, or replaces a build with --overwrite.

  Raises:
    PipelineError: the folder holds another build (without --resume, --rerun_from or
      --overwrite), or files that are not a build's.
  """
  out = options.output_dir
  # Hidden entries: the scratch folders of multi-worker tasks, which may already be there.
  entries = [n for n in os.listdir(out) if not n.startswith(".")] if os.path.isdir(out) else []
  if options.resume or not entries:
    return
  is_build = any(os.path.exists(os.path.join(out, m)) for m in _BUILD_MARKERS)
  if not is_build:
    raise PipelineError(f"--output_dir={out} is not empty and holds no build; give a new or "
                        "empty folder, so the build's files are not mixed with others")
  if not options.overwrite:
    raise PipelineError(f"--output_dir={out} holds another build; give --resume to continue "
                        "it, --rerun_from=STAGE to redo part of it, --overwrite to replace it, "
                        "or another --output_dir")
  for name in entries:
    path = os.path.join(out, name)
    if os.path.isdir(path) and not os.path.islink(path):
      shutil.rmtree(path)
    else:
      os.remove(path)


def _join_cluster(config: BuildConfig, options: RunOptions, log: Callable[[str], None]):
  """(task, strategy, options, log): with --strategy=multi_worker, this process's TF_CONFIG
  task, the strategy (made before any other TensorFlow op), the task's run options (a worker
  writes to its own scratch folder) and a log that names the worker; else (None, None, ...)."""
  if config.train.strategy != "multi_worker":
    return None, None, options, log
  task = cluster.task_from_env()
  log(f"{task.name}: waiting for the {task.tasks} tasks of TF_CONFIG to connect")
  strategy = cluster.make_strategy()
  options = cluster.task_options(options, task)
  if not task.is_chief:
    prefix = f"[{task.name}] "
    log = lambda message, log=log: log(prefix + message)
    log(f"training with the chief; this task's files go to {options.output_dir} "
        "(removed when it finishes)")
  return task, strategy, options, log


def _prepare(config: BuildConfig, options: RunOptions, flags_text: Optional[str]) -> None:
  """Output directory, config.json, seeds; a fresh build drops an earlier one's caches, a
  re-run (--rerun_from) those of the stages it redoes."""
  os.makedirs(options.output_dir, exist_ok=True)
  stale = []  # Features or checkpoints of an earlier build that must not be reused.
  if not options.resume:
    stale = ["cache", "checkpoints"]
  elif options.rerun_from:  # The phases it redoes start over, not from their last epoch.
    redone = STAGES[STAGES.index(options.rerun_from):]
    stale = [os.path.join("checkpoints", phase) for phase in ("transfer", "finetune", "qat")
             if phase in redone]
    stale += ["cache"] if "transfer" in redone else []
  for name in stale:
    shutil.rmtree(os.path.join(options.output_dir, name), ignore_errors=True)
  config.save(os.path.join(options.output_dir, CONFIG_FILE))
  if flags_text is not None:
    atomic.write_text(os.path.join(options.output_dir, "flags.txt"), flags_text)
  keras.utils.set_random_seed(config.seed)
  if config.deterministic:
    tf.config.experimental.enable_op_determinism()  # Process-wide; there is no way back.


class Log:
  """Timestamped progress lines on stdout."""

  def __init__(self):
    self.t0 = time.time()

  def __call__(self, message: str) -> None:
    elapsed = int(time.time() - self.t0)
    print(f"[{elapsed // 60:3d}:{elapsed % 60:02d}] {message}", flush=True)
