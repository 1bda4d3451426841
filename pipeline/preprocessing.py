"""The one definition of input normalization and augmentation, shared by training, export,
metadata, the TFLite runner and the benchmarks."""

import dataclasses
from typing import Tuple

import numpy as np


@dataclasses.dataclass(frozen=True)
class Normalization:
  """float_input = (uint8_pixel - mean) / std, per channel, as TFLite metadata states it."""
  mean: Tuple[float, float, float]
  std: Tuple[float, float, float]

  def apply_np(self, pixels: np.ndarray) -> np.ndarray:
    """Normalizes uint8 (or float) RGB pixels of shape [..., 3] with numpy."""
    return (pixels.astype(np.float32) - np.asarray(self.mean, np.float32)) / np.asarray(
        self.std, np.float32)

  def apply_tf(self, pixels):
    """Normalizes RGB pixels of shape [..., 3] with TensorFlow (usable inside tf.data)."""
    from pipeline.tf_compat import tf  # pylint: disable=g-import-not-at-top
    return (tf.cast(pixels, tf.float32) - tf.constant(self.mean, tf.float32)) / tf.constant(
        self.std, tf.float32)

  def input_range(self) -> Tuple[float, float]:
    """The float range that pixels 0..255 map to (the same for every channel here)."""
    lo = min((0.0 - m) / s for m, s in zip(self.mean, self.std))
    hi = max((255.0 - m) / s for m, s in zip(self.mean, self.std))
    return lo, hi


# MobileNetV2 (keras.applications.mobilenet_v2.preprocess_input) expects [-1, 1].
# This constant is the single source: tf.data, the representative dataset, the LiteRT
# runner and the TFLite metadata all read it (via config.json for saved builds).
MOBILENET_V2 = Normalization(mean=(127.5, 127.5, 127.5), std=(127.5, 127.5, 127.5))


# Test-time augmentation: the 8 symmetries of a square image (4 rotations, each also mirrored).
# Dermoscopy has no canonical orientation, so a model's mean over the 8 views is a steadier
# prediction. (k, mirrored) per view; the numpy and TensorFlow versions below enumerate the
# same views, so the benchmarks and the exported int8_tta8 model average the same images.
DIHEDRAL = tuple((k, mirrored) for k in range(4) for mirrored in (False, True))


def dihedral_view_np(pixels: np.ndarray, k: int, mirrored: bool) -> np.ndarray:
  """One dihedral view of a batch [N, H, W, C] of square images: rotated k quarter turns,
  then mirrored left-right if asked."""
  v = np.rot90(pixels, k, axes=(1, 2))
  return np.ascontiguousarray(v[:, :, ::-1] if mirrored else v)


def dihedral_stack_tf(images):
  """The 8 dihedral views of `images` [N, H, W, C] in one batch [8N, H, W, C], view-major in
  DIHEDRAL order (TensorFlow ops that TFLite runs in int8: TRANSPOSE, REVERSE_V2)."""
  from pipeline.tf_compat import tf  # pylint: disable=g-import-not-at-top
  views = []
  for k, mirrored in DIHEDRAL:
    v = tf.image.rot90(images, k) if k else images
    views.append(tf.reverse(v, axis=[2]) if mirrored else v)
  return tf.concat(views, axis=0)


def dihedral_mean_tf(outputs):
  """Per-image mean [N, C] of a model's outputs [8N, C] on `dihedral_stack_tf` views."""
  from pipeline.tf_compat import tf  # pylint: disable=g-import-not-at-top
  return tf.reduce_mean(tf.reshape(outputs, [len(DIHEDRAL), -1, outputs.shape[-1]]), axis=0)


def augment_layers(seed: int):
  """Augmentation for dermoscopy, which has no canonical orientation.

  Both flips, any rotation, zoom, brightness and contrast. Runs on uint8-range floats before
  normalization, so brightness is in pixel units.

  Args:
    seed: makes the random stream repeatable.

  Returns:
    A Keras Sequential to map over batches of images in [0, 255].
  """
  from pipeline.tf_compat import keras  # pylint: disable=g-import-not-at-top
  layers = keras.layers
  stack = [
      layers.RandomFlip("horizontal_and_vertical", seed=seed),
      layers.RandomRotation(0.5, fill_mode="reflect", seed=seed + 1),
      layers.RandomZoom((-0.15, 0.15), fill_mode="reflect", seed=seed + 2),
      layers.RandomBrightness(0.1, value_range=(0.0, 255.0), seed=seed + 3),
      layers.RandomContrast(0.15, seed=seed + 4),
  ]
  return keras.Sequential(stack, name="augment")
