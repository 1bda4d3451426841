"""One reader per data format: rows and folders in, labeled Examples out (no decoding, no
writing). Bad rows are skipped with a reason, or fail under --strict."""

import csv
import math
import os
from typing import Dict, List, Sequence, Tuple

import numpy as np

from pipeline import images as images_lib
from pipeline.config import DataConfig
from pipeline.data.dataset import Example, InputNotes
from pipeline.errors import PipelineError

HAM10000_CLASSES = ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")
# hmnist_28_28_RGB.csv ("Skin Cancer MNIST: HAM10000" on Kaggle) stores dx as integers.
# This is the table published with it (it matches the class counts: 4 -> nv, 6705 rows).
HMNIST_DEFAULT_LABELS = {0: "akiec", 1: "bcc", 2: "bkl", 3: "df", 4: "nv", 5: "vasc", 6: "mel"}


def read(config: DataConfig, notes: InputNotes,
         synthetic_root: str = "") -> Tuple[List[Example], Sequence[str]]:
  """The examples of a dataset and the class names it declares (even if empty).

  Args:
    config: the data configuration.
    notes: collects skipped rows and warnings.
    synthetic_root: where the synthetic set was generated (class folders).
  """
  if config.data_format == "ham10000":
    return read_ham10000(config.data_dir, config.metadata_csv, notes), ()
  if config.data_format == "folders":
    return read_folders(config.data_dir, notes)
  if config.data_format == "hmnist_csv":
    return read_hmnist(config.metadata_csv, config.hmnist_labels, notes), ()
  return read_folders(synthetic_root, notes)


def read_csv(path: str, required: Sequence[str]) -> Tuple[List[Dict[str, str]], List[str]]:
  """Reads a CSV leniently (UTF-8 BOM, stray whitespace) and checks required columns."""
  if not os.path.isfile(path):
    raise PipelineError(f"{path}: metadata CSV not found; check --metadata_csv")
  try:
    with open(path, encoding="utf-8-sig", newline="") as f:
      reader = csv.reader(f)
      header = next(reader, None)
      if not header:
        raise PipelineError(f"{path}: the CSV is empty; it needs a header row with "
                            f"{', '.join(required)}")
      header = [h.strip() for h in header]
      rows = []
      for row in reader:
        if not any(cell.strip() for cell in row):
          continue
        rows.append({h: (row[i].strip() if i < len(row) else "") for i, h in enumerate(header)})
  except UnicodeDecodeError as e:
    raise PipelineError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start}); save the CSV "
                        "as UTF-8") from e
  missing = [c for c in required if c not in header]
  if missing:
    raise PipelineError(f"{path}: missing required column(s) {', '.join(missing)}; found "
                        f"{', '.join(header[:12])}")
  return rows, header


def _index_images(roots: Sequence[str]) -> Dict[str, str]:
  """Maps file stem -> path for every image file under the roots (first one wins)."""
  found: Dict[str, str] = {}
  for root in roots:
    for dirpath, dirnames, filenames in os.walk(root):
      dirnames.sort()
      for name in sorted(filenames):
        stem, ext = os.path.splitext(name)
        if ext.lower() in images_lib.IMAGE_SUFFIXES:
          found.setdefault(stem, os.path.join(dirpath, name))
  return found


def check_directory(path: str, missing: str, hint: str = "") -> None:
  """Raises PipelineError when `path` is missing ("{path}: {missing}; check --data_dir") or
  a file rather than a folder."""
  if os.path.isfile(path):
    raise PipelineError(f"{path}: is a file; --data_dir takes a folder{hint}")
  if not os.path.isdir(path):
    raise PipelineError(f"{path}: {missing}; check --data_dir{hint}")


def read_ham10000(data_dir: str, metadata_csv: str, notes: InputNotes) -> List[Example]:
  roots = [d for d in data_dir.split(",") if d]
  for root in roots:
    check_directory(root, "image directory not found",
                    " (several folders may be given, comma-separated)")
  rows, header = read_csv(metadata_csv, ("image_id", "dx"))
  if "lesion_id" not in header:
    notes.warn("metadata has no lesion_id column: splitting by image, so images of one "
                "lesion may land in different splits")
  paths = _index_images(roots)
  examples = []
  for line, row in enumerate(rows, start=2):
    where = f"{metadata_csv}:{line}"
    image_id, dx = row["image_id"], row["dx"]
    if not image_id:
      notes.skip(where, "empty image_id")
      continue
    if not dx:
      notes.skip(f"{where} ({image_id})", "empty dx label")
      continue
    if dx not in HAM10000_CLASSES:
      notes.skip(f"{where} ({image_id})",
                  f"unknown dx label {dx!r}; expected one of {', '.join(HAM10000_CLASSES)}")
      continue
    path = paths.get(image_id)
    if path is None:
      notes.skip(f"{where} ({image_id})", "no image file named IMAGE_ID.* under --data_dir")
      continue
    examples.append(Example(key=image_id, label=dx, group=row.get("lesion_id") or image_id,
                            path=path))
  return examples


def read_folders(root: str, notes: InputNotes) -> Tuple[List[Example], List[str]]:
  check_directory(root, "directory not found", " (it holds one folder per class)")
  layouts: List[Tuple[str, str]] = [(root, "")]
  if os.path.isdir(os.path.join(root, "train")) and os.path.isdir(os.path.join(root, "test")):
    layouts = [(os.path.join(root, "train"), ""), (os.path.join(root, "test"), "test")]
    notes.warn("found train/ and test/: their test split is used as the test split")
  examples, declared = [], set()
  for base, given in layouts:
    for cls in sorted(os.listdir(base)):
      cls_dir = os.path.join(base, cls)
      if cls.startswith(".") or not os.path.isdir(cls_dir):
        continue
      declared.add(cls.strip())
      for dirpath, dirnames, filenames in os.walk(cls_dir):
        dirnames.sort()
        for name in sorted(filenames):
          if name.startswith("."):
            continue
          path = os.path.join(dirpath, name)
          key = os.path.relpath(path, root)
          examples.append(Example(key=key, label=cls.strip(), group=key, path=path,
                                  given_split=given))
  if not declared:
    raise PipelineError(f"{root}: no class folders found; expected ROOT/CLASS/*.jpg (or "
                        "ROOT/train/CLASS and ROOT/test/CLASS)")
  return examples, sorted(declared)


def parse_hmnist_labels(spec: str) -> Dict[int, str]:
  """Parses "0:akiec,1:bcc,..." into {0: "akiec", ...}; empty gives the default table."""
  if not spec:
    return dict(HMNIST_DEFAULT_LABELS)
  table = {}
  for part in spec.split(","):
    code, sep, name = part.partition(":")
    if not sep or not code.strip().lstrip("-").isdigit() or not name.strip():
      raise PipelineError(f"--hmnist_labels: {part!r} is not CODE:NAME; write e.g. "
                          "0:akiec,1:bcc,2:bkl,3:df,4:nv,5:vasc,6:mel")
    table[int(code)] = name.strip()
  return table


def read_hmnist(csv_path: str, spec: str, notes: InputNotes) -> List[Example]:
  table = parse_hmnist_labels(spec)
  rows, header = read_csv(csv_path, ("label",))
  pixel_cols = [h for h in header if h != "label"]
  side = int(round(math.sqrt(len(pixel_cols) / 3)))
  if side * side * 3 != len(pixel_cols):
    raise PipelineError(f"{csv_path}: {len(pixel_cols)} pixel columns is not SIDExSIDEx3 RGB "
                        "(hmnist_28_28_RGB.csv has 2352); use the RGB CSV, not the L (gray) one")
  notes.warn("hmnist CSV has no lesion ids: splitting by row, so images of one lesion may "
              "land in different splits and test figures may be optimistic")
  examples = []
  for line, row in enumerate(rows, start=2):
    where = f"{csv_path}:{line}"
    raw = row["label"]
    if not raw:
      notes.skip(where, "empty label")
      continue
    try:
      code = int(float(raw))
    except ValueError:
      notes.skip(where, f"label {raw!r} is not an integer")
      continue
    if code not in table:
      notes.skip(where, f"unknown label {code}; known: {sorted(table)} (see --hmnist_labels)")
      continue
    try:
      values = np.array([float(row[c]) for c in pixel_cols])
    except ValueError:
      notes.skip(where, "non-numeric pixel value")
      continue
    if np.isnan(values).any() or values.min() < 0 or values.max() > 255:
      notes.skip(where, "pixel values missing or outside 0..255")
      continue
    examples.append(Example(key=f"row{line}", label=table[code], group=f"row{line}",
                            pixels=values.astype(np.uint8).reshape(side, side, 3)))
  return examples
