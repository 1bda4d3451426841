"""Writers of real image files of every kind users bring (good and broken), for tests."""

import os

import numpy as np
from PIL import Image


def rgb(size=40, colour=(200, 30, 30), seed=0):
  rng = np.random.default_rng(seed)
  img = np.clip(np.array(colour) + rng.normal(0, 10, (size, size, 3)), 0, 255).astype(np.uint8)
  return img


def write(path, array=None, mode="RGB", fmt=None, size=40, colour=(200, 30, 30), seed=0):
  """Writes an image of `mode` (RGB, L, RGBA, CMYK, I;16, P) to `path`."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  arr = rgb(size, colour, seed) if array is None else array
  img = Image.fromarray(arr)
  if mode == "I;16":
    gray = np.asarray(img.convert("L"), np.uint16) * 257
    img = Image.fromarray(gray, mode="I;16")
  elif mode != "RGB":
    img = img.convert(mode)
  img.save(path, format=fmt)
  return path


def write_bad(path, kind):
  """Writes a broken file: corrupt, truncated, zero_byte or not_image."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  if kind == "zero_byte":
    open(path, "wb").close()
  elif kind == "not_image":
    with open(path, "w") as f:
      f.write("this is a text file, not a picture\n")
  elif kind == "corrupt":
    with open(path, "wb") as f:
      f.write(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4)
  elif kind == "truncated":
    write(path, fmt="JPEG", size=64)
    data = open(path, "rb").read()
    with open(path, "wb") as f:
      f.write(data[: len(data) // 2])
  else:
    raise ValueError(kind)
  return path


def ham_dataset(root, per_class=None, lesions_with_two_images=3, seed=0, folders=1):
  """A HAM10000-shaped dataset: images in `folders` folders plus HAM10000_metadata.csv.

  Returns:
    (comma-separated image folders, metadata csv path, rows as dicts).
  """
  per_class = per_class or {"akiec": 6, "bcc": 6, "mel": 8, "nv": 14}
  colours = {"akiec": (220, 40, 40), "bcc": (40, 200, 60), "mel": (40, 70, 220),
             "nv": (230, 220, 40), "bkl": (200, 40, 200), "df": (40, 210, 220),
             "vasc": (240, 140, 20)}
  dirs = [os.path.join(root, f"HAM10000_images_part_{i + 1}") for i in range(folders)]
  rows, n = [], 0
  for dx, count in per_class.items():
    for lesion in range(count):
      images = 2 if lesion < lesions_with_two_images else 1
      for _ in range(images):
        image_id = f"ISIC_{n:07d}"
        write(os.path.join(dirs[n % folders], image_id + ".jpg"), colour=colours[dx], seed=n,
              fmt="JPEG")
        rows.append({"lesion_id": f"HAM_{dx}_{lesion:04d}", "image_id": image_id, "dx": dx})
        n += 1
  csv_path = os.path.join(root, "HAM10000_metadata.csv")
  write_csv(csv_path, rows)
  return ",".join(dirs), csv_path, rows


def write_csv(path, rows, columns=("lesion_id", "image_id", "dx", "dx_type", "age", "sex",
                                   "localization"), bom=False, pad=False):
  with open(path, "w", encoding="utf-8-sig" if bom else "utf-8", newline="") as f:
    f.write(",".join(columns) + "\n")
    for r in rows:
      cells = [str(r.get(c, "")) for c in columns]
      if pad:
        cells = [f" {c} " for c in cells]
      f.write(",".join(cells) + "\n")
