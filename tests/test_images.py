"""Image decoding: photos the right way up, refused inputs that cannot be used faithfully,
any size of JPEG."""

import io

import numpy as np
import pytest
from PIL import Image

from pipeline import images as images_lib

pytestmark = pytest.mark.fast

ORIENTATION = 0x0112  # The EXIF tag a camera writes instead of rotating the pixels.


def _upright():
  """48x64 with four distinct quadrants: every rotation or mirror of it looks different."""
  img = np.zeros((48, 64, 3), np.uint8)
  img[:24, :32] = (230, 30, 30)
  img[:24, 32:] = (30, 230, 30)
  img[24:, :32] = (30, 30, 230)
  img[24:, 32:] = (230, 230, 30)
  return img


# What a camera stores for each orientation tag (EXIF 2.3, tag 0x0112): the upright picture
# transformed so that the viewer's transform for the tag restores it.
STORED = {
    1: lambda u: u,
    2: lambda u: u[:, ::-1],
    3: lambda u: u[::-1, ::-1],
    4: lambda u: u[::-1],
    5: lambda u: u.transpose(1, 0, 2),
    6: lambda u: np.rot90(u, 1),
    7: lambda u: u.transpose(1, 0, 2)[::-1, ::-1],
    8: lambda u: np.rot90(u, -1),
}


def _jpeg(pixels, orientation=None):
  buf = io.BytesIO()
  exif = Image.Exif()
  if orientation:
    exif[ORIENTATION] = orientation
  Image.fromarray(np.ascontiguousarray(pixels)).save(buf, format="JPEG", quality=95,
                                                     exif=exif.tobytes())
  buf.seek(0)
  return buf


@pytest.mark.parametrize("orientation", sorted(STORED))
def test_exif_orientation_is_applied(orientation):
  expected, _ = images_lib.load_rgb(_jpeg(_upright()), 32)
  got, _ = images_lib.load_rgb(_jpeg(STORED[orientation](_upright()), orientation), 32)
  assert np.abs(got.astype(int) - expected).mean() < 8


def test_a_float_tiff_is_refused_not_blackened(tmp_path):
  path = str(tmp_path / "f.tif")
  Image.fromarray(np.linspace(0, 1, 64 * 64, dtype=np.float32).reshape(64, 64)).save(path)
  assert Image.open(path).mode == "F"
  with pytest.raises(images_lib.ImageError, match="floating-point"):
    images_lib.load_rgb(path, 32)


@pytest.mark.parametrize("size", [(1, 1), (31, 200)])
def test_images_below_the_minimum_size_are_refused(tmp_path, size):
  path = str(tmp_path / "tiny.png")
  Image.new("RGB", size, (200, 10, 10)).save(path)
  with pytest.raises(images_lib.ImageError, match="too small"):
    images_lib.load_rgb(path, 32)
  Image.new("RGB", (32, 32), (200, 10, 10)).save(path)
  assert images_lib.load_rgb(path, 32)[0].shape == (32, 32, 3)


def test_a_108_megapixel_jpeg_is_decoded_at_reduced_size():
  # Over Pillow's own decompression-bomb limit (89.5 MP): a 12000x9000 phone photo.
  buf = io.BytesIO()
  img = Image.new("RGB", (12000, 9000), (20, 120, 220))
  img.paste((240, 240, 20), (6000, 0, 12000, 9000))
  img.save(buf, format="JPEG", quality=70)
  del img
  buf.seek(0)
  pixels, _ = images_lib.load_rgb(buf, 64)
  assert pixels[:, :28].mean(axis=(0, 1)) == pytest.approx((20, 120, 220), abs=6)
  assert pixels[:, 36:].mean(axis=(0, 1)) == pytest.approx((240, 240, 20), abs=6)


def test_a_png_too_large_to_decode_is_refused_in_plain_words(tmp_path, monkeypatch):
  path = str(tmp_path / "big.png")
  Image.new("RGB", (400, 300)).save(path)
  monkeypatch.setattr(images_lib, "MAX_PIXELS", 100_000)
  with pytest.raises(images_lib.ImageError, match="400x300 pixels is too large to decode"):
    images_lib.load_rgb(path, 32)
