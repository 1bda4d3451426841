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


# RGB -> YIQ (NTSC): Y is luma; I and Q carry the colour. Grey pixels have I = Q = 0.
_RGB_TO_YIQ = np.array([[0.299, 0.587, 0.114],
                        [0.595716, -0.274453, -0.321263],
                        [0.211456, -0.522591, 0.311135]], np.float32)


def color_matrices(saturation, hue_turns):
  """[N, 3, 3] RGB colour matrices (TensorFlow): each scales the chroma (I and Q of YIQ) by
  `saturation` [N] and turns it by `hue_turns` [N] of a full turn, leaving luma alone. A
  pixel row vector p maps to p @ M^T; a grey pixel stays as it is."""
  from pipeline.tf_compat import tf  # pylint: disable=g-import-not-at-top
  angle = 2.0 * np.pi * hue_turns
  one, zero = tf.ones_like(saturation), tf.zeros_like(saturation)
  cos, sin = saturation * tf.cos(angle), saturation * tf.sin(angle)
  chroma = tf.reshape(tf.stack([one, zero, zero, zero, cos, -sin, zero, sin, cos], axis=1),
                      [-1, 3, 3])
  return (tf.constant(np.linalg.inv(_RGB_TO_YIQ).astype(np.float32))[None] @ chroma
          @ tf.constant(_RGB_TO_YIQ)[None])


def random_color(images, strength: float, seed: int):
  """Colour jitter of a batch [N, H, W, 3] in [0, 255]: per image, saturation times
  U(1 - strength, 1 + strength) and hue turned by U(-strength, strength) x 30 degrees, as one
  `color_matrices` matrix per image."""
  from pipeline.tf_compat import tf  # pylint: disable=g-import-not-at-top
  n = tf.shape(images)[0]
  saturation = tf.random.uniform([n], 1.0 - strength, 1.0 + strength, seed=seed)
  hue_turns = tf.random.uniform([n], -strength, strength, seed=seed + 1) / 12.0
  return tf.einsum("nhwc,ndc->nhwd", images, color_matrices(saturation, hue_turns))


def augment_layers(seed: int, color_jitter: float = 0.0):
  """Augmentation for dermoscopy, which has no canonical orientation.

  Both flips, any rotation, zoom, brightness and contrast, and with `color_jitter` > 0 a colour
  jitter (`random_color`). Runs on uint8-range floats before normalization, so brightness is
  in pixel units.

  Args:
    seed: makes the random stream repeatable.
    color_jitter: colour jitter strength (0: none).

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
  if color_jitter > 0:
    stack.append(layers.Lambda(lambda x: random_color(x, color_jitter, seed + 5), name="color"))
  return keras.Sequential(stack, name="augment")
