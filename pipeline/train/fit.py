"""The resumable, checkpointing fit loop every phase runs, and what the phases share."""

import dataclasses
import json
import os
import sys
import time
from typing import Callable, Dict, List

import numpy as np

from pipeline import atomic
from pipeline import metrics
from pipeline.config import PhaseConfig
from pipeline.data import DataBundle
from pipeline.errors import PipelineError
from pipeline.preprocessing import Normalization
from pipeline.tf_compat import keras, tf
from pipeline.train import cluster

# TensorFlow checkpoint format, not HDF5: HDF5 cannot restore the SyncOnRead metric
# variables of a model built under MirroredStrategy.
BEST_WEIGHTS = "best_weights"


def checkpoint_dir(work_dir: str, phase: str) -> str:
  """Where fit_phase keeps a phase's checkpoints: ckpt/ (every epoch, the latest kept),
  best_weights (the best validation epoch) and state.json."""
  return os.path.join(work_dir, "checkpoints", phase)


@dataclasses.dataclass(frozen=True)
class Context:
  """What every phase shares: the data, the input encoding, the policy, where to write."""
  bundle: DataBundle
  normalization: Normalization
  batch_size: int
  class_balance: str  # TrainConfig.class_balance
  augment: bool
  seed: int
  work_dir: str  # The build's output directory (checkpoints/, tensorboard/, cache/).
  resume: bool  # Continue each phase from its last checkpoint.
  log: Callable[[str], None]

  def checkpoint_dir(self, phase: str) -> str:
    return checkpoint_dir(self.work_dir, phase)

  @property
  def tensorboard_dir(self) -> str:
    return os.path.join(self.work_dir, "tensorboard")


def get_strategy(name: str) -> tf.distribute.Strategy:
  """Returns the tf.distribute strategy for `name` (default | mirrored | multi_worker).

  A build creates its multi-worker strategy once, first thing (stages.run); this is for
  callers that train outside a build.

  Raises:
    PipelineError: multi_worker without a usable TF_CONFIG.
  """
  if name == "mirrored":
    return tf.distribute.MirroredStrategy()
  if name == "multi_worker":
    cluster.task_from_env()  # TF_CONFIG present and well-formed, or one clear error.
    return cluster.make_strategy()
  return tf.distribute.get_strategy()


@dataclasses.dataclass
class PhaseResult:
  """What a phase did: its history, the epoch it kept, and how it ran."""
  name: str
  history: Dict[str, List[float]]
  best_epoch: int  # 1-based; 0 when the phase ran no epoch.
  best_val_balanced_accuracy: float
  seconds: float
  mode: str = ""
  resumed_from_epoch: int = 0
  kept_epoch: int = 0  # The epoch whose weights the model holds: best_epoch, or the last.


class _EpochCheckpoint(keras.callbacks.Callback):
  """Validates on balanced accuracy, keeps the best weights, checkpoints every epoch.

  The best epoch has the highest validation balanced accuracy; among equal ones, the lowest
  validation loss.

  After each epoch it writes a tf.train.Checkpoint (model and optimizer, so a resumed run
  continues the learning-rate schedule) and state.json (epochs done, history, best epoch).
  """

  def __init__(self, name: str, ckpt_dir: str, val_inputs, val_labels: np.ndarray,
               epochs: int, state: dict, log: Callable[[str], None]):
    super().__init__()
    self.name, self.ckpt_dir, self.epochs, self.log = name, ckpt_dir, epochs, log
    self.val_inputs, self.val_labels = val_inputs, val_labels
    self.state = state
    self.manager = None
    self.epoch_start = 0.0

  def on_train_begin(self, logs=None):
    ckpt = tf.train.Checkpoint(model=self.model, optimizer=self.model.optimizer)
    self.manager = tf.train.CheckpointManager(ckpt, os.path.join(self.ckpt_dir, "ckpt"),
                                              max_to_keep=1)

  def on_epoch_begin(self, epoch, logs=None):
    self.epoch_start = time.time()

  def on_epoch_end(self, epoch, logs=None):
    probs = self.model.predict(self.val_inputs, verbose=0)
    y = self.val_labels
    bacc = metrics.argmax_balanced_accuracy(y, probs)
    val_loss = float(-np.log(np.clip(probs[np.arange(len(y)), y], 1e-7, 1.0)).mean())
    history = self.state["history"]
    for key, value in (("loss", (logs or {}).get("loss", float("nan"))), ("val_loss", val_loss),
                       ("val_balanced_accuracy", bacc),
                       ("seconds", time.time() - self.epoch_start)):
      history.setdefault(key, []).append(float(value))
    # Ties (common when a small validation set saturates) go to the lower validation loss:
    # the later, better-converged epoch rather than the first one to reach the score.
    best = self.state["best_val_balanced_accuracy"]
    improved = bacc > best or (bacc == best and val_loss < self.state.get("best_val_loss",
                                                                         float("inf")))
    if improved:
      self.state.update(best_val_balanced_accuracy=bacc, best_val_loss=val_loss,
                        best_epoch=epoch + 1)
      self.model.save_weights(os.path.join(self.ckpt_dir, BEST_WEIGHTS))
    self.state["epochs_done"] = epoch + 1
    self.manager.save(checkpoint_number=epoch + 1)
    atomic.write_json(os.path.join(self.ckpt_dir, "state.json"), self.state)
    per_epoch = float(np.mean(history["seconds"]))
    eta = per_epoch * (self.epochs - epoch - 1)
    self.log(f"{self.name} epoch {epoch + 1}/{self.epochs}: loss {history['loss'][-1]:.4f}  "
             f"val_loss {val_loss:.4f}  val_balanced_acc {bacc:.4f}"
             f"{' *' if improved else ''}  ({history['seconds'][-1]:.0f}s, ETA "
             f"{duration(eta)})")


def restore_epoch(model: keras.Model, work_dir: str, phase: str, which: str) -> None:
  """Loads a finished phase's "best_val" or "last" epoch, as fit_phase checkpointed it, into
  `model` (the same architecture, e.g. the build's saved model).

  Raises:
    PipelineError: the build kept no such checkpoint.
  """
  ckpt_dir = checkpoint_dir(work_dir, phase)
  if which == "best_val":
    path = os.path.join(ckpt_dir, BEST_WEIGHTS)
    found = os.path.exists(path + ".index")
  else:
    path = tf.train.latest_checkpoint(os.path.join(ckpt_dir, "ckpt"))
    found = bool(path)
  if not found:
    raise PipelineError(f"{work_dir}: no {which} {phase} checkpoint in {ckpt_dir} (a build keeps "
                        "them unless its output directory was cleaned)")
  if which == "best_val":
    model.load_weights(path).expect_partial()
  else:
    tf.train.Checkpoint(model=model).restore(path).expect_partial()


def duration(seconds: float) -> str:
  """12s, or 3m05s."""
  seconds = int(round(seconds))
  return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def fit_phase(name: str, model: keras.Model, phase: PhaseConfig, ctx: Context, loss,
              train_data, steps_per_epoch: int, val_inputs, val_labels: np.ndarray,
              mode: str = "", keep: str = "best_val") -> PhaseResult:
  """Compiles and fits one phase with checkpoints and resume; keeps the best or last epoch.

  Args:
    name: the phase ("transfer", "finetune", "qat"): its checkpoint and TensorBoard folder.
    model: what to train (in place).
    phase: epochs and learning-rate schedule.
    ctx: what the phases share (resume, log, where to write).
    loss: the compiled loss.
    train_data: a repeating dataset of (x, y, sample weight).
    steps_per_epoch: batches per epoch.
    val_inputs: validation inputs (dataset or array), in `val_labels` order.
    val_labels: validation label indices.
    mode: how the phase ran, for the report.
    keep: "best_val" (the epoch with the best validation balanced accuracy) or "last" (the
      schedule's end; validation is still measured and reported).

  Returns:
    The phase result; the model holds the kept epoch's weights.
  """
  ckpt_dir, log, resume = ctx.checkpoint_dir(name), ctx.log, ctx.resume
  os.makedirs(ckpt_dir, exist_ok=True)
  state_path = os.path.join(ckpt_dir, "state.json")
  state = {"phase": name, "epochs_done": 0, "best_epoch": 0,
           "best_val_balanced_accuracy": -1.0, "history": {}}
  model.compile(optimizer=make_optimizer(phase, steps_per_epoch), loss=loss,
                weighted_metrics=[])
  start_epoch = 0
  if resume and os.path.exists(state_path):
    with open(state_path, encoding="utf-8") as f:
      state = json.load(f)
    ckpt = tf.train.Checkpoint(model=model, optimizer=model.optimizer)
    latest = tf.train.latest_checkpoint(os.path.join(ckpt_dir, "ckpt"))
    if latest:
      ckpt.restore(latest).expect_partial()
      start_epoch = state["epochs_done"]
      log(f"{name}: resuming after epoch {start_epoch}/{phase.epochs}")
  elif os.path.isdir(ckpt_dir):
    for stale in ("state.json", BEST_WEIGHTS + ".index"):
      if os.path.exists(os.path.join(ckpt_dir, stale)):
        os.remove(os.path.join(ckpt_dir, stale))
  t0 = time.time()
  callback = _EpochCheckpoint(name, ckpt_dir, val_inputs, val_labels, phase.epochs, state, log)
  if start_epoch < phase.epochs:
    model.fit(train_data, epochs=phase.epochs, initial_epoch=start_epoch,
              steps_per_epoch=steps_per_epoch,
              callbacks=[callback, keras.callbacks.TensorBoard(
                  os.path.join(ctx.tensorboard_dir, name), write_graph=False, profile_batch=0)],
              verbose=1 if sys.stdout.isatty() else 0)
  best_path = os.path.join(ckpt_dir, BEST_WEIGHTS)
  kept = state["epochs_done"]
  if keep == "best_val" and os.path.exists(best_path + ".index"):
    model.load_weights(best_path).expect_partial()
    kept = state["best_epoch"]
  seconds = time.time() - t0
  result = PhaseResult(name=name, history=state["history"], best_epoch=state["best_epoch"],
                       best_val_balanced_accuracy=max(state["best_val_balanced_accuracy"], 0.0),
                       seconds=seconds, mode=mode, resumed_from_epoch=start_epoch,
                       kept_epoch=kept)
  log(f"{name}: done in {duration(seconds)}; kept epoch {kept}/{phase.epochs} ({keep}); best "
      f"val balanced accuracy {result.best_val_balanced_accuracy:.4f} at epoch "
      f"{result.best_epoch}")
  return result


def make_optimizer(phase: PhaseConfig, steps_per_epoch: int) -> keras.optimizers.Optimizer:
  """Adam with cosine decay and linear warm-up (built fresh per compile)."""
  total = max(phase.epochs * steps_per_epoch, 1)
  warmup = int(phase.warmup_epochs * steps_per_epoch)
  if warmup > 0:
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=phase.learning_rate * 0.1, decay_steps=max(total - warmup, 1),
        warmup_target=phase.learning_rate, warmup_steps=warmup, alpha=0.01)
  else:
    schedule = keras.optimizers.schedules.CosineDecay(phase.learning_rate, total, alpha=0.01)
  return keras.optimizers.Adam(schedule)
