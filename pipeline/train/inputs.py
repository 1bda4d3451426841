"""The training input pipeline: tf.data over a split, class balance, augmentation."""

import math
from typing import Dict, Optional, Tuple

import numpy as np

from pipeline.data import DataBundle, Split
from pipeline.preprocessing import Normalization, augment_layers
from pipeline.tf_compat import tf


def oversample_indices(labels: np.ndarray, seed: int) -> np.ndarray:
  """Indices that repeat each class's items (randomly) up to the largest class's count."""
  rng = np.random.default_rng(seed)
  largest = np.bincount(labels).max()
  out = []
  for c in np.unique(labels):
    idx = np.flatnonzero(labels == c)
    out.append(np.concatenate([idx, rng.choice(idx, largest - len(idx), replace=True)]))
  return np.concatenate(out)


def class_weights(train_counts: np.ndarray, class_balance: str) -> Optional[Dict[int, float]]:
  """Per-class loss weights from the training counts: "balanced" n / (k * n_c); "sqrt"
  proportional to 1 / sqrt(n_c) (square-root inverse frequency, milder: benchmarks.distill
  --reweight), averaging 1 over the training images as "balanced" does. None otherwise
  ("logit_adjusted" and "oversample" balance through the loss or the sampling)."""
  total, k = train_counts.sum(), len(train_counts)
  if class_balance == "balanced":
    return {i: float(total / (k * c)) if c else 0.0 for i, c in enumerate(train_counts)}
  if class_balance == "sqrt":
    roots = np.sqrt(np.asarray(train_counts, np.float64))
    return {i: float(total / (roots.sum() * r)) if r else 0.0 for i, r in enumerate(roots)}
  return None


def class_priors(train_counts: np.ndarray) -> np.ndarray:
  """Each class's share of the training split."""
  return train_counts / train_counts.sum()


def pixel_dataset(split: Split, batch_size: int, indices: Optional[np.ndarray] = None,
                  shuffle_seed: Optional[int] = None, targets: Optional[np.ndarray] = None):
  """Batches of (uint8 pixels [B, S, S, 3], label indices [B]) from a split, with each
  item's row of `targets` [N, ...] as a third element when given.

  Pixels come from `Split.pixels`: from memory when the data stage cached them, otherwise
  decoded from disk (batches in parallel).
  """
  if indices is None:
    indices = np.arange(len(split))
  ds = tf.data.Dataset.from_tensor_slices(indices.astype(np.int64))
  if shuffle_seed is not None:
    ds = ds.shuffle(len(indices), seed=shuffle_seed, reshuffle_each_iteration=True)
  labels = tf.constant(split.labels, tf.int32)
  rows = None if targets is None else tf.constant(targets)
  shape = (None, split.image_size, split.image_size, 3)

  def load(i):
    pixels = tf.ensure_shape(tf.numpy_function(split.pixels, [i], tf.uint8), shape)
    return (pixels, tf.gather(labels, i)) + (() if rows is None else (tf.gather(rows, i),))
  return ds.batch(batch_size).map(load, num_parallel_calls=tf.data.AUTOTUNE)


def preprocess_batch(pixels, normalization: Normalization, augmenter=None,
                     image_size: Optional[int] = None):
  """uint8 pixels -> normalized float model input, optionally augmented first, optionally
  resized (antialiased) to `image_size` after that (progressive resizing's low resolution).

  The same function runs eagerly (tests, features) and inside tf.data (training).
  """
  x = tf.cast(pixels, tf.float32)
  if augmenter is not None:
    x = tf.clip_by_value(augmenter(x, training=True), 0.0, 255.0)
  if image_size is not None:
    x = tf.image.resize(x, (image_size, image_size), antialias=True)
  return normalization.apply_tf(x)


def train_sampling(bundle: DataBundle, seed: int,
                   class_balance: str) -> Tuple[np.ndarray, np.ndarray]:
  """What one epoch of the train split is made of under a class balance.

  Returns:
    (indices into the train split: every item once, or oversampled; per-class loss weight
    as a float32 array of length k, all 1.0 unless `class_weights` gives weights).
  """
  labels = bundle.splits["train"].labels
  indices = (oversample_indices(labels, seed) if class_balance == "oversample"
             else np.arange(len(labels)))
  weights = class_weights(bundle.train_counts(), class_balance)
  per_class = np.array([weights[i] if weights else 1.0 for i in range(len(bundle.labels))],
                       np.float32)
  return indices, per_class


def training_dataset(bundle: DataBundle, normalization: Normalization, batch_size: int,
                     seed: int, augment: bool, class_balance: str,
                     targets: Optional[np.ndarray] = None, image_size: Optional[int] = None,
                     color_jitter: float = 0.0):
  """(x, y, sample weight) batches of the train split, shuffled every epoch: y is the one-hot
  label, or the image's row of `targets` [N, K] (soft targets, e.g. distillation's); x at
  the split's size, or resized to `image_size`; `color_jitter` as `augment_layers`.

  Returns:
    (the dataset of one epoch, its number of batches).
  """
  split = bundle.splits["train"]
  k = len(bundle.labels)
  indices, per_class = train_sampling(bundle, seed, class_balance)
  weight_table = tf.constant(per_class)
  augmenter = augment_layers(seed, color_jitter) if augment else None
  ds = pixel_dataset(split, batch_size, indices, shuffle_seed=seed, targets=targets)
  ds = ds.map(lambda x, y, *soft: (preprocess_batch(x, normalization, augmenter, image_size),
                                   soft[0] if soft else tf.one_hot(y, k),
                                   tf.gather(weight_table, y)),
              num_parallel_calls=tf.data.AUTOTUNE)
  return ds.prefetch(tf.data.AUTOTUNE), math.ceil(len(indices) / batch_size)


def eval_dataset(split: Split, normalization: Normalization, batch_size: int,
                 image_size: Optional[int] = None):
  """Normalized, unaugmented inputs of a split, in order (no labels), at the split's size or
  resized to `image_size`."""
  ds = pixel_dataset(split, batch_size)
  return ds.map(lambda x, y: preprocess_batch(x, normalization, image_size=image_size),
                num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
