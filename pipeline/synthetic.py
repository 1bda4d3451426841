"""A deterministic synthetic image set that a small CNN learns in seconds: the demo data."""

import io
import os
import shutil

import numpy as np
from PIL import Image

from pipeline import atomic

# Distinct hues, so classes separate even through a randomly initialised backbone.
_PALETTE = (
    ("red", (220, 40, 40)), ("green", (40, 200, 60)), ("blue", (40, 70, 220)),
    ("yellow", (230, 220, 40)), ("magenta", (210, 40, 200)), ("cyan", (40, 210, 220)),
    ("orange", (240, 140, 20)), ("gray", (128, 128, 128)),
)
MAX_CLASSES = len(_PALETTE)


def class_names(num_classes: int):
  """The names of the first `num_classes` synthetic classes."""
  return [name for name, _ in _PALETTE[:num_classes]]


def make_image(class_index: int, size: int, rng: np.random.Generator) -> np.ndarray:
  """One RGB uint8 image: a noisy field of the class colour with a dark 'lesion' blob.

  Every image holds pure black and pure white pixels, so calibration on these images sees
  the full 0..255 input range, as it does on real photos.
  """
  colour = np.array(_PALETTE[class_index][1], np.float32)
  img = colour + rng.normal(0, 8, (size, size, 3))
  yy, xx = np.mgrid[0:size, 0:size]
  cy, cx = rng.uniform(0.3, 0.7, 2) * size
  radius = rng.uniform(0.12, 0.25) * size
  blob = ((yy - cy) ** 2 + (xx - cx) ** 2) < radius ** 2
  img[blob] *= rng.uniform(0.7, 0.85)
  img = np.clip(img, 0, 255).astype(np.uint8)
  img[0, 0] = 0
  img[-1, -1] = 255
  return img


def write_dataset(root: str, num_classes: int, per_class: int, size: int, seed: int) -> None:
  """Writes ROOT/CLASS/NNNN.png; reruns with the same arguments write the same bytes.

  Args:
    root: the output folder (a `folders`-format dataset).
    num_classes: 2..MAX_CLASSES.
    per_class: images per class.
    size: image height and width.
    seed: the random stream.
  """
  if not 2 <= num_classes <= MAX_CLASSES:
    raise ValueError(f"num_classes must be in 2..{MAX_CLASSES}, got {num_classes}")
  rng = np.random.default_rng(seed)
  if os.path.isdir(root):
    shutil.rmtree(root)
  for c, name in enumerate(class_names(num_classes)):
    folder = os.path.join(root, name)
    os.makedirs(folder, exist_ok=True)
    for i in range(per_class):
      path = os.path.join(folder, f"{i:04d}.png")
      # Always rewritten: the same arguments give the same bytes, other ones must not mix
      # with files left by an earlier build.
      buf = io.BytesIO()
      Image.fromarray(make_image(c, size, rng)).save(buf, format="PNG")
      atomic.write_bytes(path, buf.getvalue())
