"""Decodes any image file a user may bring into an RGB uint8 array, or says why it can't."""

from typing import BinaryIO, Tuple, Union

import numpy as np
from PIL import Image
from PIL import ImageOps

from pipeline.errors import PipelineError

# The most pixels decoded at once: 100 megapixels of RGB is 300 MB. A large JPEG is decoded at
# reduced scale (draft mode) first, so only its reduced size counts.
MAX_PIXELS = 100_000_000
# Pillow's own decompression-bomb limit would refuse a 108-megapixel phone photo before draft
# mode could shrink it; MAX_PIXELS is checked on what is really decoded instead.
Image.MAX_IMAGE_PIXELS = None
MIN_SIDE = 32  # Smaller images hold too little to classify (or to train on).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")


class ImageError(PipelineError):
  """The file is not a usable image; the message says why."""


def load_rgb(path: Union[str, BinaryIO], size: int) -> Tuple[np.ndarray, str]:
  """Decodes `path` upright, converts it to 8-bit RGB and resizes it to size x size.

  The EXIF orientation a phone writes is applied, so the model sees the photo the right way
  up. Resizing squashes the whole image (no crop), as TFLite Task Library and MediaPipe do on
  the phone, so training sees what the app will feed.

  Args:
    path: an image file, or an open binary file (an upload).
    size: output height and width.

  Returns:
    (uint8 array [size, size, 3], note) where note says what was converted, or "".

  Raises:
    ImageError: the file is empty, truncated, corrupt, not an image, too small, too large to
      decode within memory, or in a mode with no faithful 8-bit RGB form.
  """
  try:
    with Image.open(path) as img:
      width, height = img.size
      if min(width, height) < MIN_SIDE:
        raise ImageError(f"{width}x{height} pixels is too small; at least {MIN_SIDE}x{MIN_SIDE} "
                         "is needed")
      if img.format == "JPEG" and max(width, height) > 4 * size:
        img.draft("RGB", (2 * size, 2 * size))  # Decode large JPEGs at reduced scale.
      if img.size[0] * img.size[1] > MAX_PIXELS:
        raise ImageError(f"{width}x{height} pixels is too large to decode within memory (at "
                         f"most {MAX_PIXELS // 1_000_000} megapixels, or any size as JPEG); "
                         "save it smaller")
      img.load()
      rgb, note = _to_rgb(ImageOps.exif_transpose(img))
  except ImageError:
    raise
  except FileNotFoundError as e:
    raise ImageError("file not found") from e
  except (OSError, SyntaxError, ValueError, Image.UnidentifiedImageError) as e:
    if _is_empty(path):
      raise ImageError("zero-byte file") from e
    raise ImageError(f"not a readable image ({_short(e)})") from e
  if rgb.size != (size, size):
    rgb = rgb.resize((size, size), Image.BILINEAR)
  return np.asarray(rgb, dtype=np.uint8), note


def _to_rgb(img: Image.Image) -> Tuple[Image.Image, str]:
  mode = img.mode
  if mode == "RGB":
    return img, ""
  if mode == "F":  # Floating-point samples have no one range: any mapping to 0-255 is a guess.
    raise ImageError("a 32-bit floating-point image has no faithful 8-bit RGB form; save it "
                     "as an 8-bit or 16-bit image")
  if mode in ("I;16", "I;16B", "I;16L", "I"):
    # PIL's own I -> L conversion clips at 255; scale the 16-bit range down instead.
    arr = np.asarray(img, dtype=np.float64)
    peak = 65535.0 if arr.max() > 255 else 255.0
    gray = Image.fromarray(np.clip(arr / peak * 255.0 + 0.5, 0, 255).astype(np.uint8))
    return gray.convert("RGB"), f"converted 16-bit {mode} to RGB"
  if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
    # Composite on black so transparent regions do not carry arbitrary hidden colours.
    rgba = img.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
    return Image.alpha_composite(background, rgba).convert("RGB"), f"converted {mode} to RGB"
  return img.convert("RGB"), f"converted {mode} to RGB"


def _is_empty(path: Union[str, BinaryIO]) -> bool:
  if not isinstance(path, str):
    path.seek(0, 2)
    return path.tell() == 0
  try:
    with open(path, "rb") as f:
      return not f.read(1)
  except OSError:
    return False


def _short(e: Exception) -> str:
  if isinstance(e, Image.UnidentifiedImageError):
    return "not a known image format"  # PIL's own text repeats the path or an object repr.
  text = str(e).splitlines()[0] if str(e) else type(e).__name__
  return text[:160]
