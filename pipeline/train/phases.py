"""The two float phases: transfer (new head on the frozen backbone) and fine-tuning."""

import math
import os
import sys
import time

import numpy as np

from pipeline import atomic
from pipeline import model as model_lib
from pipeline.config import BALANCE_NAMES, PhaseConfig
from pipeline.train import inputs
from pipeline.train.fit import Context, PhaseResult, duration, fit_phase
from pipeline.train.losses import classification_loss
from pipeline.tf_compat import keras, tf


def run_transfer(model: keras.Model, phase: PhaseConfig, ctx: Context) -> PhaseResult:
  """Trains the new head on the frozen backbone's pooled features, computed once per image
  (epochs take seconds; no augmentation).

  Args:
    model: the float classifier (trained in place).
    phase: epochs and learning rate.
    ctx: what the phases share.

  Returns:
    The phase result.
  """
  model_lib.set_trainable(model, 0)
  bundle = ctx.bundle
  val = bundle.splits["val"]
  k = len(bundle.labels)
  loss = classification_loss(phase.label_smoothing)
  t0 = time.time()
  train_x = _cached_features(model, "train", ctx)
  val_x = _cached_features(model, "val", ctx)
  ctx.log(f"transfer: features of {len(train_x) + len(val_x)} images ready in "
          f"{duration(time.time() - t0)}")
  train = bundle.splits["train"]
  indices, per_class = inputs.train_sampling(bundle, ctx.seed, ctx.class_balance)
  sample_w = per_class[train.labels[indices]]
  head_in = keras.Input(shape=train_x.shape[1:], name="features")
  head_out = model.get_layer("classifier")(model.get_layer("head_dropout")(head_in))
  head = keras.Model(head_in, head_out, name="head")  # Shares the classifier's weights.
  batch = max(ctx.batch_size, 64)  # Features are tiny: bigger batches, same optimum.
  ds = tf.data.Dataset.from_tensor_slices(
      (train_x[indices], tf.one_hot(train.labels[indices], k), sample_w))
  ds = ds.shuffle(len(indices), seed=ctx.seed, reshuffle_each_iteration=True).batch(batch)
  steps = math.ceil(len(indices) / batch)
  return fit_phase("transfer", head, phase, ctx, loss, ds.repeat(), steps, val_x, val.labels,
                   mode="cached_features")


def _cached_features(model: keras.Model, split_name: str, ctx: Context) -> np.ndarray:
  """Pooled backbone features of a split, computed once and kept in work_dir/cache."""
  path = os.path.join(ctx.work_dir, "cache", f"features_{split_name}.npy")
  split = ctx.bundle.splits[split_name]
  if os.path.exists(path):
    feats = np.load(path)
    if len(feats) == len(split):
      return feats
  ctx.log(f"transfer: computing backbone features of {len(split)} {split_name} images")
  feats = model_lib.feature_extractor(model).predict(
      inputs.eval_dataset(split, ctx.normalization, ctx.batch_size),
      verbose=1 if sys.stdout.isatty() else 0)
  atomic.write_with(path, lambda tmp: np.save(tmp, feats))
  return feats


def run_finetune(model: keras.Model, phase: PhaseConfig, layers: int,
                 ctx: Context) -> PhaseResult:
  """Unfreezes the top `layers` of the backbone (BN stays in inference mode) and trains at a
  lower learning rate with warm-up and cosine decay, keeping the last epoch.

  Args:
    model: the float classifier after transfer (trained in place).
    phase: epochs, learning rate, warm-up, label smoothing.
    layers: how many top backbone layers to train (TrainConfig.finetune_layers).
    ctx: what the phases share.

  Returns:
    The phase result.
  """
  model_lib.set_trainable(model, layers)
  bundle = ctx.bundle
  ds, steps = inputs.training_dataset(bundle, ctx.normalization, ctx.batch_size, ctx.seed + 1,
                                      ctx.augment, ctx.class_balance)
  val = bundle.splits["val"]
  return fit_phase("finetune", model, phase, ctx, classification_loss(phase.label_smoothing),
                   ds.repeat(), steps,
                   inputs.eval_dataset(val, ctx.normalization, ctx.batch_size), val.labels,
                   mode=f"top {layers} backbone layers"  # The model card's training line.
                   + ("" if ctx.class_balance == "none" else
                      f"; {BALANCE_NAMES[ctx.class_balance]}"), keep="last")
