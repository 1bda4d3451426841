"""Training stages: transfer (frozen backbone), fine-tune, and quantization-aware training."""

import dataclasses
import json
import math
import os
import sys
import time
from typing import Callable, Dict, List, Optional

import numpy as np

from pipeline import atomic
from pipeline import metrics
from pipeline import model as model_lib
from pipeline.config import PhaseConfig, TrainConfig
from pipeline.data import DataBundle, Split
from pipeline.errors import PipelineError
from pipeline.preprocessing import Normalization, augment_layers
from pipeline.tf_compat import keras, tf

import tensorflow_model_optimization as tfmot  # pylint: disable=g-import-not-at-top,g-bad-import-order
from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (  # pylint: disable=g-import-not-at-top,g-bad-import-order
    default_8bit_quantize_configs as configs)


# TensorFlow checkpoint format, not HDF5: HDF5 cannot restore the SyncOnRead metric
# variables of a model built under MirroredStrategy.
BEST_WEIGHTS = "best_weights"

# ------------------------------------------------------------------------------ input


def get_strategy(name: str) -> tf.distribute.Strategy:
  """Returns the tf.distribute strategy for `name` (default | mirrored | multi_worker).

  Raises:
    PipelineError: multi_worker without TF_CONFIG.
  """
  if name == "mirrored":
    return tf.distribute.MirroredStrategy()
  if name == "multi_worker":
    if not os.environ.get("TF_CONFIG"):
      raise PipelineError("--strategy=multi_worker needs TF_CONFIG describing the cluster; "
                          "set it on every worker, or use --strategy=mirrored")
    return tf.distribute.MultiWorkerMirroredStrategy()
  return tf.distribute.get_strategy()


def oversample_indices(labels: np.ndarray, seed: int) -> np.ndarray:
  """Indices that repeat each class's items (randomly) up to the largest class's count."""
  rng = np.random.default_rng(seed)
  largest = np.bincount(labels).max()
  out = []
  for c in np.unique(labels):
    idx = np.flatnonzero(labels == c)
    out.append(np.concatenate([idx, rng.choice(idx, largest - len(idx), replace=True)]))
  return np.concatenate(out)


def pixel_dataset(split: Split, image_size: int, batch_size: int,
                  indices: Optional[np.ndarray] = None, shuffle_seed: Optional[int] = None):
  """Batches of (uint8 pixels [B, S, S, 3], label indices [B]) from a split.

  Decoded images come from memory when the data stage cached them, otherwise they are
  decoded (already validated) from disk in parallel.
  """
  if indices is None:
    indices = np.arange(len(split))
  ds = tf.data.Dataset.from_tensor_slices(indices.astype(np.int64))
  if shuffle_seed is not None:
    ds = ds.shuffle(len(indices), seed=shuffle_seed, reshuffle_each_iteration=True)
  labels = tf.constant(split.labels, tf.int32)
  shape = (None, image_size, image_size, 3)
  if split.images is not None:
    images = split.images
    ds = ds.batch(batch_size).map(
        lambda i: (tf.numpy_function(lambda j: images[j], [i], tf.uint8), tf.gather(labels, i)),
        num_parallel_calls=tf.data.AUTOTUNE)
  else:
    from pipeline import images as images_lib  # pylint: disable=g-import-not-at-top
    paths = split.paths

    def load(j):
      return images_lib.load_rgb(paths[int(j)], image_size)[0]

    ds = ds.map(lambda i: (tf.numpy_function(load, [i], tf.uint8), tf.gather(labels, i)),
                num_parallel_calls=tf.data.AUTOTUNE).batch(batch_size)
  return ds.map(lambda x, y: (tf.ensure_shape(x, shape), y))


def preprocess_batch(pixels, normalization: Normalization, augmenter=None):
  """uint8 pixels -> normalized float model input, optionally augmented first.

  The same function runs eagerly (tests, features) and inside tf.data (training).
  """
  x = tf.cast(pixels, tf.float32)
  if augmenter is not None:
    x = tf.clip_by_value(augmenter(x, training=True), 0.0, 255.0)
  return normalization.apply_tf(x)


def train_sampling(bundle: DataBundle, seed: int, class_balance: str):
  """What one epoch of the train split is made of under a class balance.

  Returns:
    (indices into the train split: every item once, or oversampled; per-class loss weight
    as a float32 array of length k, all 1.0 unless class_balance == "balanced").
  """
  labels = bundle.splits["train"].labels
  indices = (oversample_indices(labels, seed) if class_balance == "oversample"
             else np.arange(len(labels)))
  weights = bundle.class_weights(class_balance)
  per_class = np.array([weights[i] if weights else 1.0 for i in range(len(bundle.labels))],
                       np.float32)
  return indices, per_class


def training_dataset(bundle: DataBundle, normalization: Normalization, batch_size: int,
                     seed: int, augment: bool, class_balance: str):
  """(x, one-hot y, sample weight) batches of the train split, shuffled every epoch.

  Returns:
    (the dataset of one epoch, its number of batches).
  """
  split = bundle.splits["train"]
  k = len(bundle.labels)
  indices, per_class = train_sampling(bundle, seed, class_balance)
  weight_table = tf.constant(per_class)
  augmenter = augment_layers(seed) if augment else None
  ds = pixel_dataset(split, bundle.image_size, batch_size, indices, shuffle_seed=seed)
  ds = ds.map(lambda x, y: (preprocess_batch(x, normalization, augmenter),
                            tf.one_hot(y, k), tf.gather(weight_table, y)),
              num_parallel_calls=tf.data.AUTOTUNE)
  return ds.prefetch(tf.data.AUTOTUNE), math.ceil(len(indices) / batch_size)


def eval_dataset(split: Split, image_size: int, normalization: Normalization, batch_size: int):
  """Normalized, unaugmented inputs of a split, in order (no labels)."""
  ds = pixel_dataset(split, image_size, batch_size)
  return ds.map(lambda x, y: preprocess_batch(x, normalization),
                num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


# -------------------------------------------------------------------------- callbacks


@dataclasses.dataclass
class PhaseResult:
  """What a phase did: its history, the chosen epoch, and how it ran."""
  name: str
  history: Dict[str, List[float]]
  best_epoch: int  # 1-based; 0 when the phase ran no epoch.
  best_val_balanced_accuracy: float
  seconds: float
  mode: str = ""
  resumed_from_epoch: int = 0


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
             f"{_duration(eta)})")


@keras.saving.register_keras_serializable(package="pipeline")
class LogitAdjustedCrossentropy(keras.losses.Loss):
  """Cross-entropy of softmax(logits + tau * log prior) for a model that outputs softmax(logits).

  Logit adjustment (Menon et al., "Long-tail learning via logit adjustment", ICLR 2021):
  training against prior-shifted logits makes the model's own outputs estimate
  p(y|x) / prior(y), whose argmax maximizes balanced accuracy, without per-class loss
  weights (which multiply rare images' gradients by up to 15x on HAM10000). With the
  softmax already applied, softmax(z + tau * log prior) = p * prior^tau / sum(p * prior^tau).
  """

  def __init__(self, priors, tau: float = 1.0, label_smoothing: float = 0.0,
               name: str = "logit_adjusted_crossentropy", **kwargs):
    super().__init__(name=name, **kwargs)
    self.priors = [float(p) for p in priors]
    self.tau = float(tau)
    self.label_smoothing = float(label_smoothing)

  def call(self, y_true, y_pred):
    shift = tf.constant(np.power(np.maximum(self.priors, 1e-12), self.tau), y_pred.dtype)
    adjusted = y_pred * shift
    adjusted = adjusted / tf.reduce_sum(adjusted, axis=-1, keepdims=True)
    return keras.losses.categorical_crossentropy(y_true, adjusted,
                                                 label_smoothing=self.label_smoothing)

  def get_config(self):
    return {**super().get_config(), "priors": self.priors, "tau": self.tau,
            "label_smoothing": self.label_smoothing}


def classification_loss(bundle: DataBundle, class_balance: str,
                        label_smoothing: float) -> keras.losses.Loss:
  """The training loss for a class balance (weights themselves come with the data)."""
  if class_balance == "logit_adjusted":
    return LogitAdjustedCrossentropy(bundle.class_priors(), label_smoothing=label_smoothing)
  return keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing)


def _duration(seconds: float) -> str:
  seconds = int(round(seconds))
  return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def _fit_phase(name: str, model: keras.Model, phase: PhaseConfig, steps_per_epoch: int,
               make_optimizer: Callable[[], keras.optimizers.Optimizer], loss, train_data,
               val_inputs, val_labels: np.ndarray, ckpt_dir: str, resume: bool,
               tensorboard_dir: str, log: Callable[[str], None], mode: str = "") -> PhaseResult:
  """Compiles and fits one phase with checkpoints and resume; restores the best epoch."""
  os.makedirs(ckpt_dir, exist_ok=True)
  state_path = os.path.join(ckpt_dir, "state.json")
  state = {"phase": name, "epochs_done": 0, "best_epoch": 0,
           "best_val_balanced_accuracy": -1.0, "history": {}}
  model.compile(optimizer=make_optimizer(), loss=loss, weighted_metrics=[])
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
                  os.path.join(tensorboard_dir, name), write_graph=False, profile_batch=0)],
              verbose=1 if sys.stdout.isatty() else 0)
  best_path = os.path.join(ckpt_dir, BEST_WEIGHTS)
  if os.path.exists(best_path + ".index"):
    model.load_weights(best_path).expect_partial()
  seconds = time.time() - t0
  result = PhaseResult(name=name, history=state["history"], best_epoch=state["best_epoch"],
                       best_val_balanced_accuracy=max(state["best_val_balanced_accuracy"], 0.0),
                       seconds=seconds, mode=mode, resumed_from_epoch=start_epoch)
  log(f"{name}: done in {_duration(seconds)}; best epoch {result.best_epoch}/{phase.epochs} "
      f"with val balanced accuracy {result.best_val_balanced_accuracy:.4f}")
  return result


def _optimizer_factory(phase: PhaseConfig, steps_per_epoch: int):
  """Adam with cosine decay and linear warm-up, built fresh per compile."""
  total = max(phase.epochs * steps_per_epoch, 1)
  warmup = int(phase.warmup_epochs * steps_per_epoch)

  def make():
    if warmup > 0:
      schedule = keras.optimizers.schedules.CosineDecay(
          initial_learning_rate=phase.learning_rate * 0.1, decay_steps=max(total - warmup, 1),
          warmup_target=phase.learning_rate, warmup_steps=warmup, alpha=0.01)
    else:
      schedule = keras.optimizers.schedules.CosineDecay(phase.learning_rate, total, alpha=0.01)
    return keras.optimizers.Adam(schedule)

  return make


# ----------------------------------------------------------------------------- phases


def run_transfer(model: keras.Model, bundle: DataBundle, config: TrainConfig,
                 normalization: Normalization, work_dir: str, seed: int, augment: bool,
                 class_balance: str, resume: bool,
                 log: Callable[[str], None]) -> PhaseResult:
  """Trains the new head on the frozen backbone.

  With transfer_mode="cached_features" the frozen backbone runs once per image and the
  head trains on the pooled features (epochs take seconds; no augmentation). With
  "end_to_end" every batch goes through the backbone, with augmentation.

  Args:
    model: the float classifier (trained in place).
    bundle: the dataset.
    config: training configuration.
    normalization: input normalization.
    work_dir: the build's output directory.
    seed: shuffling seed.
    augment: augment in end_to_end mode.
    class_balance: "balanced", "none", "logit_adjusted" or "oversample"
      (DataConfig.class_balance).
    resume: continue from the phase's last checkpoint.
    log: progress printer.

  Returns:
    The phase result.
  """
  phase = config.transfer
  model_lib.set_trainable(model, 0)
  ckpt_dir = os.path.join(work_dir, "checkpoints", "transfer")
  tb_dir = os.path.join(work_dir, "tensorboard")
  val = bundle.splits["val"]
  k = len(bundle.labels)
  loss = classification_loss(bundle, class_balance, phase.label_smoothing)
  if config.transfer_mode == "end_to_end":
    ds, steps = training_dataset(bundle, normalization, config.batch_size, seed, augment,
                                 class_balance)
    return _fit_phase("transfer", model, phase, steps, _optimizer_factory(phase, steps), loss,
                      ds.repeat(), eval_dataset(val, bundle.image_size, normalization,
                                                config.batch_size),
                      val.labels, ckpt_dir, resume, tb_dir, log, mode="end_to_end")

  t0 = time.time()
  train_x = _cached_features(model, bundle, "train", normalization, config.batch_size, work_dir,
                             log)
  val_x = _cached_features(model, bundle, "val", normalization, config.batch_size, work_dir, log)
  log(f"transfer: features of {len(train_x) + len(val_x)} images ready in "
      f"{_duration(time.time() - t0)}")
  train = bundle.splits["train"]
  indices, per_class = train_sampling(bundle, seed, class_balance)
  sample_w = per_class[train.labels[indices]]
  head_in = keras.Input(shape=train_x.shape[1:], name="features")
  head_out = model.get_layer("classifier")(model.get_layer("head_dropout")(head_in))
  head = keras.Model(head_in, head_out, name="head")  # Shares the classifier's weights.
  batch = max(config.batch_size, 64)  # Features are tiny: bigger batches, same optimum.
  ds = tf.data.Dataset.from_tensor_slices(
      (train_x[indices], tf.one_hot(train.labels[indices], k), sample_w))
  ds = ds.shuffle(len(indices), seed=seed, reshuffle_each_iteration=True).batch(batch)
  steps = math.ceil(len(indices) / batch)
  result = _fit_phase("transfer", head, phase, steps, _optimizer_factory(phase, steps), loss,
                      ds.repeat(), val_x, val.labels, ckpt_dir, resume, tb_dir, log,
                      mode="cached_features")
  return result


def _cached_features(model: keras.Model, bundle: DataBundle, split_name: str,
                     normalization: Normalization, batch_size: int, work_dir: str,
                     log: Callable[[str], None]) -> np.ndarray:
  """Pooled backbone features of a split, computed once and kept in work_dir/cache."""
  path = os.path.join(work_dir, "cache", f"features_{split_name}.npy")
  split = bundle.splits[split_name]
  if os.path.exists(path):
    feats = np.load(path)
    if len(feats) == len(split):
      return feats
  log(f"transfer: computing backbone features of {len(split)} {split_name} images")
  feats = model_lib.feature_extractor(model).predict(
      eval_dataset(split, bundle.image_size, normalization, batch_size),
      verbose=1 if sys.stdout.isatty() else 0)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  tmp = path + ".tmp.npy"
  np.save(tmp, feats)
  os.replace(tmp, path)
  return feats


def run_finetune(model: keras.Model, bundle: DataBundle, config: TrainConfig,
                 normalization: Normalization, work_dir: str, seed: int, augment: bool,
                 class_balance: str, resume: bool,
                 log: Callable[[str], None]) -> PhaseResult:
  """Unfreezes the top `finetune_layers` of the backbone (BN stays in inference mode) and
  trains at a lower learning rate with warm-up and cosine decay, keeping the epoch with the
  best validation balanced accuracy. Arguments as for `run_transfer`."""
  phase = config.finetune
  model_lib.set_trainable(model, config.finetune_layers)
  ds, steps = training_dataset(bundle, normalization, config.batch_size, seed + 1, augment,
                               class_balance)
  val = bundle.splits["val"]
  return _fit_phase(
      "finetune", model, phase, steps, _optimizer_factory(phase, steps),
      classification_loss(bundle, class_balance, phase.label_smoothing), ds.repeat(),
      eval_dataset(val, bundle.image_size, normalization, config.batch_size), val.labels,
      os.path.join(work_dir, "checkpoints", "finetune"), resume,
      os.path.join(work_dir, "tensorboard"), log,
      mode=f"top {config.finetune_layers} backbone layers")


def calibrate_qat_ranges(qat_model: keras.Model, float_model: keras.Model, batches) -> int:
  """Starts the QAT model's activation ranges at the float model's real ranges.

  tfmot starts every activation range at [-6, 6] and moves it by an EMA with decay 0.999,
  so a short QAT schedule (a hundred steps) still mostly carries the initial range, which
  clips or wastes int8 resolution (on HAM10000 one QAT epoch from [-6, 6] cost 35 points of
  balanced accuracy). Here each quantized activation gets the min/max that the float
  model's same-named layer produces on real training images (PTQ-style calibration);
  QAT then refines them.

  Args:
    qat_model: from tfmot quantize_model(float_model).
    float_model: the float classifier it was made from.
    batches: normalized float input batches (real training images).

  Returns:
    The number of activation ranges set.
  """
  targets = {}  # float layer name -> [(kind, min variable, max variable)]
  for wrapper in qat_model.layers:
    inner = getattr(wrapper, "layer", None)
    if inner is None:
      continue
    variables = {v.name.split("/")[-1].split(":")[0]: v for v in wrapper.non_trainable_weights}
    for kind in ("output", "post_activation", "pre_activation"):
      if f"{kind}_min" in variables:
        targets.setdefault(inner.name, []).append(
            (kind, variables[f"{kind}_min"], variables[f"{kind}_max"]))
  float_names = {l.name for l in float_model.layers}
  names = [n for n in targets if n in float_names]
  if not names or not len(batches):
    return 0
  # Weight ranges (LastValueQuantizer) are only written by a training-mode call; until then
  # they too sit at [-6, 6]. One pass sets them exactly (activation EMAs move by 0.1%, and
  # are overwritten below).
  qat_model(batches[0], training=True)
  # pre_activation is the input of the layer's activation: recompute it from the layer's
  # input (only the Dense classifier has one, so this stays cheap).
  probe = keras.Model(float_model.input,
                      [float_model.get_layer(n).output for n in names] +
                      [float_model.get_layer(n).input for n in names])
  lo = {}
  hi = {}
  for batch in batches:
    outs = probe(batch, training=False)
    for i, name in enumerate(names):
      layer = float_model.get_layer(name)
      for kind, _, _ in targets[name]:
        if kind == "pre_activation":
          value = tf.matmul(outs[len(names) + i], layer.kernel) + layer.bias
        else:
          value = outs[i]
        key = (name, kind)
        lo[key] = min(lo.get(key, 0.0), float(tf.reduce_min(value)))
        hi[key] = max(hi.get(key, 0.0), float(tf.reduce_max(value)))
  count = 0
  for name in names:
    for kind, vmin, vmax in targets[name]:
      vmin.assign(tf.fill(tf.shape(vmin), lo[(name, kind)]))
      vmax.assign(tf.fill(tf.shape(vmax), hi[(name, kind)]))
      count += 1
  return count


class DepthwisePerChannelQuantizer(tfmot.quantization.keras.quantizers.Quantizer):
  """Symmetric int8 fake quantization of a depthwise kernel, one scale per channel.

  This is what TFLite does with depthwise weights (narrow range [-127, 127], scale
  max|w| / 127 per channel), so the QAT model trains against the int8 model it becomes.
  """

  def build(self, tensor_shape, name, layer):
    return {}

  def __call__(self, inputs, training, weights, **kwargs):
    # Kernel [kh, kw, channels, multiplier]: one scale per channel (axis 2). Plain ops with a
    # straight-through gradient, not a FakeQuant op: the converter would attach a FakeQuant's
    # scales to the wrong axis; here it folds the (already on-grid) weights and quantizes
    # them per-channel itself, to the same int8 values.
    scale = tf.stop_gradient(
        tf.maximum(tf.reduce_max(tf.abs(inputs), axis=[0, 1, 3], keepdims=True), 1e-8) / 127.0)
    return inputs + tf.stop_gradient(tf.round(inputs / scale) * scale - inputs)

  def get_config(self):
    return {}


class DepthwisePerChannelConfig(tfmot.quantization.keras.QuantizeConfig):
  """Per-channel depthwise kernels (see above), output left to the following BN + ReLU6.

  tfmot 0.8's own "per-axis" depthwise quantizer quantizes along the kernel's last axis,
  the depth multiplier (size 1): in effect per-tensor. Pretrained kernels with folded BN
  have very different per-channel scales, so their small channels vanish: on HAM10000 the
  fine-tuned model's tfmot QAT copy scored 0.19 balanced accuracy before any QAT step
  (float: 0.64), cosine 0.91 already after the first depthwise layer.
  """

  def get_weights_and_quantizers(self, layer):
    return [(layer.depthwise_kernel, DepthwisePerChannelQuantizer())]

  def get_activations_and_quantizers(self, layer):
    # No quantization point between the depthwise conv and its BatchNormalization: the
    # converter folds the BN into the conv only when nothing sits between them (with one
    # there, the int8 model kept 17 extra MUL + 17 ADD ops and ran 1.36x slower). The
    # ReLU6 after the BN is quantized, as in tfmot's own Conv+BN+ReLU pattern.
    return []

  def set_quantize_weights(self, layer, quantize_weights):
    layer.depthwise_kernel = quantize_weights[0]

  def set_quantize_activations(self, layer, quantize_activations):
    pass

  def get_output_quantizers(self, layer):
    return []

  def get_config(self):
    return {}


def quantize_model(float_model: keras.Model, finetune_layers: int,
                   normalization: Normalization, calibration_batches=()) -> keras.Model:
  """Wraps the trained float model for QAT (tfmot default 8-bit scheme).

  The architecture is never re-declared: tfmot clones `float_model` with its weights. The
  layers the fine-tune phase trained stay trainable; BN stays frozen (inference mode).

  Args:
    float_model: the fine-tuned float classifier.
    finetune_layers: how many top backbone layers QAT may train.
    normalization: the input normalization (pins the input quantizer's range).
    calibration_batches: normalized real training batches for `calibrate_qat_ranges`.

  Returns:
    The quantization-aware model.
  """
  model_lib.set_trainable(float_model, finetune_layers)
  qkeras = tfmot.quantization.keras

  # BatchNormalizations fed by a depthwise conv: the converter folds them into the conv.
  bn_after_depthwise = {
      l.name for l in float_model.layers
      if isinstance(l, keras.layers.BatchNormalization) and isinstance(
          l.inbound_nodes[0].inbound_layers, keras.layers.DepthwiseConv2D)}

  def annotate(layer):
    if isinstance(layer, keras.layers.InputLayer):
      return layer.__class__.from_config(layer.get_config())
    if isinstance(layer, keras.layers.DepthwiseConv2D):
      config = DepthwisePerChannelConfig()
    elif layer.name in bn_after_depthwise:
      config = configs.NoOpQuantizeConfig()
    else:
      config = None
    return qkeras.quantize_annotate_layer(layer.__class__.from_config(layer.get_config()),
                                          quantize_config=config)

  annotated = keras.models.clone_model(float_model, clone_function=annotate)
  annotated.set_weights(float_model.get_weights())
  with qkeras.quantize_scope({"DepthwisePerChannelConfig": DepthwisePerChannelConfig,
                              "DepthwisePerChannelQuantizer": DepthwisePerChannelQuantizer,
                              "NoOpQuantizeConfig": configs.NoOpQuantizeConfig}):
    qat = qkeras.quantize_apply(annotated)
  trainable = {l.name: l.trainable for l in float_model.layers}
  for layer in qat.layers:
    inner = getattr(layer, "layer", None)
    if inner is not None and inner.name in trainable:
      layer.trainable = trainable[inner.name]
  calibrate_qat_ranges(qat, float_model, calibration_batches)
  pin_input_range(qat, normalization)
  return qat


def pin_input_range(qat_model: keras.Model, normalization: Normalization) -> None:
  """Sets the input quantizer's range to exactly what the normalization maps 0..255 to.

  The converter derives the uint8 input's scale and zero point from this range, so the
  shipped model takes raw pixels, as phone APIs (Task Library, MediaPipe) feed them.
  """
  lo, hi = normalization.input_range()
  # The first QuantizeLayer quantizes the model input (Keras may suffix its name: _1, _2).
  layer = next(l for l in qat_model.layers if l.name.startswith("quantize_layer"))
  for weight in layer.weights:
    if weight.name.endswith("_min:0"):
      weight.assign(lo)
    elif weight.name.endswith("_max:0"):
      weight.assign(hi)


class Distillation(keras.Model):
  """Trains `student` to reproduce `teacher`'s output probabilities.

  Each step runs the teacher (inference mode) on the same augmented batch the student sees
  and uses its probabilities as the target of the compiled loss (cross-entropy with soft
  targets: KL divergence plus a constant). Labels in the data are ignored; sample weights
  still apply. Inference (`call`, `predict`) is the student's.
  """

  def __init__(self, student: keras.Model, teacher: keras.Model):
    super().__init__(name=f"{student.name}_distillation")
    self.student = student
    self.teacher = teacher
    self.teacher.trainable = False

  def call(self, inputs, training=None):
    return self.student(inputs, training=training)

  def train_step(self, data):
    x, _, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    target = tf.stop_gradient(self.teacher(x, training=False))
    with tf.GradientTape() as tape:
      probs = self.student(x, training=True)
      loss = self.compute_loss(x, target, probs, sample_weight)
    self.optimizer.minimize(loss, self.student.trainable_variables, tape=tape)
    return {m.name: m.result() for m in self.metrics}


def run_qat(qat_model: keras.Model, bundle: DataBundle, config: TrainConfig,
            normalization: Normalization, work_dir: str, seed: int, augment: bool,
            class_balance: str, resume: bool, log: Callable[[str], None],
            float_model: keras.Model) -> PhaseResult:
  """A short, low learning rate quantization-aware training run from the fine-tuned
  weights. Arguments as for `run_transfer`, with the model from `quantize_model`; with
  config.qat_target == "float_model", `float_model` (the fine-tuned float classifier) is the
  teacher whose probabilities QAT learns."""
  phase = config.qat
  ds, steps = training_dataset(bundle, normalization, config.batch_size, seed + 2, augment,
                               class_balance)
  val = bundle.splits["val"]
  if config.qat_target == "float_model":
    model, mode = Distillation(qat_model, float_model), "distilled from the float model"
    loss = keras.losses.CategoricalCrossentropy()
  else:
    model, mode = qat_model, "labels"
    loss = classification_loss(bundle, class_balance, config.finetune.label_smoothing)
  result = _fit_phase(
      "qat", model, phase, steps, _optimizer_factory(phase, steps), loss,
      ds.repeat(), eval_dataset(val, bundle.image_size, normalization, config.batch_size),
      val.labels, os.path.join(work_dir, "checkpoints", "qat"), resume,
      os.path.join(work_dir, "tensorboard"), log, mode=mode)
  pin_input_range(qat_model, normalization)
  return result
