"""The training input pipeline: tf.data over a split, class balance, augmentation."""

import math
from typing import Dict, Optional, Tuple

import numpy as np

from pipeline.data import DataBundle, Split
from pipeline.preprocessing import Normalization, augment_layers
from pipeline.tf_compat import tf


def class_weights(train_counts: np.ndarray, class_balance: str) -> Optional[Dict[int, float]]:
  """Per-class loss weights from the training counts: "balanced" n / (k * n_c); "sqrt"
  proportional to 1 / sqrt(n_c) (square-root inverse frequency, milder), averaging 1 over the
  training images as "balanced" does. None for "none"."""
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
                  shuffle_seed: Optional[int] = None):
  """Batches of (uint8 pixels [B, S, S, 3], label indices [B]) from a split.

  Pixels come from `Split.pixels`: from memory when the data stage cached them, otherwise
  decoded from disk (batches in parallel).
  """
  if indices is None:
    indices = np.arange(len(split))
  ds = tf.data.Dataset.from_tensor_slices(indices.astype(np.int64))
  if shuffle_seed is not None:
    ds = ds.shuffle(len(indices), seed=shuffle_seed, reshuffle_each_iteration=True)
  labels = tf.constant(split.labels, tf.int32)
  shape = (None, split.image_size, split.image_size, 3)

  def load(i):
    pixels = tf.ensure_shape(tf.numpy_function(split.pixels, [i], tf.uint8), shape)
    return pixels, tf.gather(labels, i)
  return ds.batch(batch_size).map(load, num_parallel_calls=tf.data.AUTOTUNE)


def preprocess_batch(pixels, normalization: Normalization, augmenter=None):
  """uint8 pixels -> normalized float model input, optionally augmented first.

  The same function runs eagerly (tests, features) and inside tf.data (training).
  """
  x = tf.cast(pixels, tf.float32)
  if augmenter is not None:
    x = tf.clip_by_value(augmenter(x, training=True), 0.0, 255.0)
  return normalization.apply_tf(x)


def train_sampling(bundle: DataBundle, seed: int,
                   class_balance: str) -> Tuple[np.ndarray, np.ndarray]:
  """What one epoch of the train split is made of under a class balance.

  Returns:
    (indices into the train split: every item once; per-class loss weight as a float32 array
    of length k, all 1.0 unless `class_weights` gives weights).
  """
  del seed  # Every item once per epoch; the order is drawn by the dataset's shuffle.
  indices = np.arange(len(bundle.splits["train"].labels))
  weights = class_weights(bundle.train_counts(), class_balance)
  per_class = np.array([weights[i] if weights else 1.0 for i in range(len(bundle.labels))],
                       np.float32)
  return indices, per_class


def training_dataset(bundle: DataBundle, normalization: Normalization, batch_size: int,
                     seed: int, augment: bool, class_balance: str):
  """(x, y, sample weight) batches of the train split, shuffled every epoch: y is the one-hot
  label.

  Returns:
    (the dataset of one epoch, its number of batches).
  """
  split = bundle.splits["train"]
  k = len(bundle.labels)
  indices, per_class = train_sampling(bundle, seed, class_balance)
  weight_table = tf.constant(per_class)
  augmenter = augment_layers(seed) if augment else None
  ds = pixel_dataset(split, batch_size, indices, shuffle_seed=seed)
  ds = ds.map(lambda x, y: (preprocess_batch(x, normalization, augmenter),
                            tf.one_hot(y, k), tf.gather(weight_table, y)),
              num_parallel_calls=tf.data.AUTOTUNE)
  return ds.prefetch(tf.data.AUTOTUNE), math.ceil(len(indices) / batch_size)


def eval_dataset(split: Split, normalization: Normalization, batch_size: int):
  """Normalized, unaugmented inputs of a split, in order (no labels)."""
  ds = pixel_dataset(split, batch_size)
  return ds.map(lambda x, y: preprocess_batch(x, normalization),
                num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
