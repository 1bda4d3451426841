"""Data stage: read a dataset, reject bad input, decide the label list once, split it."""

import collections
import concurrent.futures
import csv
import dataclasses
import math
import os
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from pipeline import atomic
from pipeline import images as images_lib
from pipeline import labels as labels_lib
from pipeline.config import DataConfig
from pipeline.errors import PipelineError

SPLITS = ("train", "val", "test")
HAM10000_CLASSES = ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")
# hmnist_28_28_RGB.csv ("Skin Cancer MNIST: HAM10000" on Kaggle) stores dx as integers.
# This is the table published with it (it matches the class counts: 4 -> nv, 6705 rows).
HMNIST_DEFAULT_LABELS = {0: "akiec", 1: "bcc", 2: "bkl", 3: "df", 4: "nv", 5: "vasc", 6: "mel"}


@dataclasses.dataclass(frozen=True)
class Example:
  """One labeled input before decoding."""
  key: str  # Stable id: image_id, path relative to the data root, or CSV row.
  label: str
  group: str  # Items sharing a group (a lesion) never cross splits.
  path: str = ""  # Empty for pixel-CSV rows, whose pixels travel in `pixels`.
  pixels: Optional[np.ndarray] = None
  given_split: str = ""  # "test" when the dataset ships its own test split.


@dataclasses.dataclass
class Split:
  """The examples of one split, with their decoded images when they fit in memory."""
  keys: List[str]
  paths: List[str]
  labels: np.ndarray  # int32 indices into the label list.
  groups: List[str]
  images: Optional[np.ndarray]  # uint8 [N, S, S, 3], or None when streamed from disk.

  def __len__(self) -> int:
    return len(self.keys)


@dataclasses.dataclass
class DataBundle:
  """What the data stage hands to the rest of the build."""
  labels: Tuple[str, ...]
  splits: Dict[str, Split]
  image_size: int
  report: dict

  def class_weights(self, class_balance: str) -> Optional[Dict[int, float]]:
    """Per-class loss weights from the training counts ("balanced": n / (k * n_c)); None
    otherwise ("logit_adjusted" and "oversample" balance through the loss or the sampling)."""
    if class_balance != "balanced":
      return None
    counts = self._train_counts()
    total, k = counts.sum(), len(self.labels)
    return {i: float(total / (k * c)) if c else 0.0 for i, c in enumerate(counts)}

  def class_priors(self) -> np.ndarray:
    """Each class's share of the training split."""
    counts = self._train_counts()
    return counts / counts.sum()

  def _train_counts(self) -> np.ndarray:
    return np.bincount(self.splits["train"].labels, minlength=len(self.labels))


class _Report:
  """Collects skipped and converted inputs as the stage goes."""

  def __init__(self, strict: bool):
    self.strict = strict
    self.skipped: List[dict] = []
    self.converted: List[dict] = []
    self.warnings: List[str] = []

  def skip(self, item: str, reason: str) -> None:
    if self.strict:
      raise PipelineError(f"{item}: {reason} (--strict is set; fix or remove this input, or "
                          "drop --strict to skip it)")
    self.skipped.append({"item": item, "reason": reason})

  def warn(self, message: str) -> None:
    self.warnings.append(message)


def run_data_stage(config: DataConfig, seed: int, output_dir: str,
                   split_file: str = "") -> DataBundle:
  """Loads, checks, labels and splits a dataset; writes labels.txt, splits.csv and
  data_report.json into `output_dir`.

  Args:
    config: the data configuration.
    seed: drives the split (and the synthetic set).
    output_dir: where the three files go.
    split_file: a splits.csv to reuse instead of splitting (overrides config.split_file).

  Returns:
    The decoded, split dataset.

  Raises:
    PipelineError: on input that cannot be used, with the file or row and the fix.
  """
  report = _Report(config.strict)
  examples, declared = _read_examples(config, seed, output_dir, report)
  examples = _dedupe_keys(examples, report)
  examples, pixels, streamed = _decode_all(examples, config, report)

  labels = _decide_labels(examples, declared, report)
  index = {label: i for i, label in enumerate(labels)}
  split_file = split_file or config.split_file
  if split_file:
    assignment = _read_split_file(split_file, examples)
  else:
    assignment = split_examples(examples, config.val_fraction, config.test_fraction, seed)

  splits = {}
  for name in SPLITS:
    chosen = [i for i, e in enumerate(examples) if assignment[e.key] == name]
    if not chosen:
      raise PipelineError(f"the {name} split is empty; add more images (each class needs at "
                          "least 3 lesions/images) or adjust --val_fraction/--test_fraction")
    splits[name] = Split(
        keys=[examples[i].key for i in chosen],
        paths=[examples[i].path for i in chosen],
        labels=np.array([index[examples[i].label] for i in chosen], np.int32),
        groups=[examples[i].group for i in chosen],
        images=None if streamed else pixels[chosen])

  bundle = DataBundle(labels=tuple(labels), splits=splits, image_size=config.image_size,
                      report={})
  bundle.report = _summarize(config, bundle, report, streamed)
  _write_outputs(bundle, output_dir)
  return bundle


# ----------------------------------------------------------------------------- reading


def _read_examples(config: DataConfig, seed: int, output_dir: str,
                   report: _Report) -> Tuple[List[Example], Sequence[str]]:
  """Returns the examples and the class names the dataset declares (even if empty)."""
  if config.data_format == "ham10000":
    return _read_ham10000(config.data_dir, config.metadata_csv, report), ()
  if config.data_format == "folders":
    return _read_folders(config.data_dir, report)
  if config.data_format == "hmnist_csv":
    return _read_hmnist(config.metadata_csv, config.hmnist_labels, report), ()
  from pipeline import synthetic  # pylint: disable=g-import-not-at-top
  root = os.path.join(output_dir, "synthetic_data")
  synthetic.write_dataset(root, config.synthetic_classes, config.synthetic_per_class,
                          config.image_size, seed)
  return _read_folders(root, report)


def _read_csv(path: str, required: Sequence[str]) -> Tuple[List[Dict[str, str]], List[str]]:
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


def _read_ham10000(data_dir: str, metadata_csv: str, report: _Report) -> List[Example]:
  roots = [d for d in data_dir.split(",") if d]
  for root in roots:
    if not os.path.isdir(root):
      raise PipelineError(f"{root}: image directory not found; check --data_dir (several "
                          "folders may be given, comma-separated)")
  rows, header = _read_csv(metadata_csv, ("image_id", "dx"))
  if "lesion_id" not in header:
    report.warn("metadata has no lesion_id column: splitting by image, so images of one "
                "lesion may land in different splits")
  paths = _index_images(roots)
  examples = []
  for line, row in enumerate(rows, start=2):
    where = f"{metadata_csv}:{line}"
    image_id, dx = row["image_id"], row["dx"]
    if not image_id:
      report.skip(where, "empty image_id")
      continue
    if not dx:
      report.skip(f"{where} ({image_id})", "empty dx label")
      continue
    if dx not in HAM10000_CLASSES:
      report.skip(f"{where} ({image_id})",
                  f"unknown dx label {dx!r}; expected one of {', '.join(HAM10000_CLASSES)}")
      continue
    path = paths.get(image_id)
    if path is None:
      report.skip(f"{where} ({image_id})", f"no image file named {image_id}.* under --data_dir")
      continue
    examples.append(Example(key=image_id, label=dx, group=row.get("lesion_id") or image_id,
                            path=path))
  return examples


def _read_folders(root: str, report: _Report) -> Tuple[List[Example], List[str]]:
  if not os.path.isdir(root):
    raise PipelineError(f"{root}: directory not found; check --data_dir")
  layouts: List[Tuple[str, str]] = [(root, "")]
  if os.path.isdir(os.path.join(root, "train")) and os.path.isdir(os.path.join(root, "test")):
    layouts = [(os.path.join(root, "train"), ""), (os.path.join(root, "test"), "test")]
    report.warn("found train/ and test/: their test split is used as the test split")
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


def _read_hmnist(csv_path: str, spec: str, report: _Report) -> List[Example]:
  table = parse_hmnist_labels(spec)
  rows, header = _read_csv(csv_path, ("label",))
  pixel_cols = [h for h in header if h != "label"]
  side = int(round(math.sqrt(len(pixel_cols) / 3)))
  if side * side * 3 != len(pixel_cols):
    raise PipelineError(f"{csv_path}: {len(pixel_cols)} pixel columns is not SIDExSIDEx3 RGB "
                        "(hmnist_28_28_RGB.csv has 2352); use the RGB CSV, not the L (gray) one")
  report.warn("hmnist CSV has no lesion ids: splitting by row, so images of one lesion may "
              "land in different splits and test figures may be optimistic")
  examples = []
  for line, row in enumerate(rows, start=2):
    where = f"{csv_path}:{line}"
    raw = row["label"]
    if not raw:
      report.skip(where, "empty label")
      continue
    try:
      code = int(float(raw))
    except ValueError:
      report.skip(where, f"label {raw!r} is not an integer")
      continue
    if code not in table:
      report.skip(where, f"unknown label {code}; known: {sorted(table)} (see --hmnist_labels)")
      continue
    try:
      values = np.array([float(row[c]) for c in pixel_cols])
    except ValueError:
      report.skip(where, "non-numeric pixel value")
      continue
    if np.isnan(values).any() or values.min() < 0 or values.max() > 255:
      report.skip(where, "pixel values missing or outside 0..255")
      continue
    examples.append(Example(key=f"row{line}", label=table[code], group=f"row{line}",
                            pixels=values.astype(np.uint8).reshape(side, side, 3)))
  return examples


def _dedupe_keys(examples: List[Example], report: _Report) -> List[Example]:
  seen, kept = set(), []
  for e in examples:
    if e.key in seen:
      report.skip(e.key, "duplicated image id; the first occurrence is kept")
      continue
    seen.add(e.key)
    kept.append(e)
  return kept


# ---------------------------------------------------------------------------- decoding


def _decode_all(examples: List[Example], config: DataConfig,
                report: _Report) -> Tuple[List[Example], Optional[np.ndarray], bool]:
  """Decodes every image once, in parallel, so no bad file ever reaches tf.data.

  Returns:
    (usable examples, uint8 pixels or None when too large to cache, streamed flag).
  """
  size = config.image_size
  budget = config.cache_max_gb * 1e9
  streamed = len(examples) * size * size * 3 > budget
  if streamed:
    report.warn(f"decoded images exceed --cache_max_gb={config.cache_max_gb}: streaming "
                "from disk each epoch")

  def decode(e: Example):
    if e.pixels is not None:
      from PIL import Image  # pylint: disable=g-import-not-at-top
      img = Image.fromarray(e.pixels).resize((size, size), Image.BILINEAR)
      return np.asarray(img, np.uint8), ""
    return images_lib.load_rgb(e.path, size)

  workers = config.decode_workers or os.cpu_count() or 1
  keep, pixels = [], []
  with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
    futures = [pool.submit(decode, e) for e in examples]
    for e, future in zip(examples, futures):
      try:
        arr, note = future.result()
      except images_lib.ImageError as err:
        report.skip(e.path or e.key, str(err))
        continue
      if note:
        report.converted.append({"item": e.path or e.key, "note": note})
      keep.append(e)
      if not streamed:
        pixels.append(arr)
  if not keep:
    raise PipelineError("the dataset is empty: no usable images were found (see the skipped "
                        "list above); check --data_dir, --metadata_csv and --data_format")
  stacked = None if streamed else np.stack(pixels)
  return keep, stacked, streamed


def _decide_labels(examples: List[Example], declared: Sequence[str],
                   report: _Report) -> List[str]:
  """The ordered label list, decided once, from the data, sorted so it is stable."""
  present = sorted({e.label for e in examples})
  for cls in declared:
    if cls not in present:
      message = f"class {cls!r} has no usable images"
      if report.strict:
        raise PipelineError(f"{message} (--strict); add images or remove the class folder")
      report.warn(message + "; it is left out of the label list")
  if len(present) < 2:
    raise PipelineError(f"only {len(present)} class has usable images ({', '.join(present)}); "
                        "a classifier needs at least 2")
  for label in present:
    labels_lib.check_label(label)
  return present


# --------------------------------------------------------------------------- splitting


def split_examples(examples: Sequence[Example], val_fraction: float, test_fraction: float,
                   seed: int) -> Dict[str, str]:
  """Assigns every example to train/val/test, stratified by class and grouped.

  All examples of a group (a lesion) go to the same split. Groups are shuffled per class
  with `seed` and dealt out so each split gets its share of each class's images. A split
  shipped with the dataset (given_split="test") is kept and val is taken from the rest.

  Args:
    examples: the usable examples.
    val_fraction: share of each class for validation.
    test_fraction: share of each class for test (ignored where a test split is given).
    seed: makes the assignment repeatable.

  Returns:
    {example key: split name}.

  Raises:
    PipelineError: a class has too few groups to appear in every split.
  """
  assignment: Dict[str, str] = {}
  has_given_test = any(e.given_split == "test" for e in examples)
  group_label: Dict[str, str] = {}
  group_members: Dict[str, List[Example]] = collections.defaultdict(list)
  for e in examples:
    if e.given_split == "test":
      assignment[e.key] = "test"
      continue
    group_members[e.group].append(e)
    # A group takes its most common label; ties break by name for determinism.
    group_label.setdefault(e.group, e.label)
  for group, members in group_members.items():
    counts = collections.Counter(m.label for m in members)
    group_label[group] = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[0][0]

  by_class: Dict[str, List[str]] = collections.defaultdict(list)
  for group in sorted(group_members):
    by_class[group_label[group]].append(group)

  rng = np.random.default_rng(seed)
  needed = ("val",) if has_given_test else ("val", "test")
  for label in sorted(by_class):
    groups = by_class[label]
    if len(groups) < len(needed) + 1:
      raise PipelineError(
          f"class {label!r} has {len(groups)} lesion(s)/image(s); at least {len(needed) + 1} "
          "are needed to put one in each split. Add images, or remove the class")
    order = [groups[i] for i in rng.permutation(len(groups))]
    sizes = {g: len(group_members[g]) for g in order}
    total = sum(sizes.values())
    targets = {"val": val_fraction * total, "test": 0.0 if has_given_test else test_fraction * total}
    filled = {"val": 0, "test": 0}
    for split in needed:
      # Each split gets at least one group, then groups until its share is reached.
      while order and (filled[split] == 0 or filled[split] + sizes[order[0]] / 2 <= targets[split]):
        if len(order) <= 1:  # Always leave one group for training.
          break
        g = order.pop(0)
        filled[split] += sizes[g]
        for m in group_members[g]:
          assignment[m.key] = split
    for g in order:
      for m in group_members[g]:
        assignment[m.key] = "train"
  return assignment


def _load_split_assignment(path: str) -> Dict[str, str]:
  """Reads a splits.csv into {key: split}, checking the split names."""
  if not os.path.isfile(path):
    raise PipelineError(f"{path}: split file not found; check --split_file")
  rows, _ = _read_csv(path, ("key", "split"))
  assignment = {r["key"]: r["split"] for r in rows}
  bad = [s for s in set(assignment.values()) if s not in SPLITS]
  if bad:
    raise PipelineError(f"{path}: unknown split name(s) {', '.join(sorted(bad))}; use "
                        f"{', '.join(SPLITS)}")
  return assignment


def _read_split_file(path: str, examples: Sequence[Example]) -> Dict[str, str]:
  """The saved assignment of every usable example; all of them must be in the file."""
  assignment = _load_split_assignment(path)
  missing = [e.key for e in examples if e.key not in assignment]
  if missing:
    raise PipelineError(f"{path}: {len(missing)} usable image(s) are not in the split file "
                        f"(first: {missing[0]}); it belongs to another dataset, or drop "
                        "--split_file to split anew")
  return {e.key: assignment[e.key] for e in examples}


# ----------------------------------------------------------------------------- outputs


def _summarize(config: DataConfig, bundle: DataBundle, report: _Report, streamed: bool) -> dict:
  counts = {
      name: {label: int((split.labels == i).sum()) for i, label in enumerate(bundle.labels)}
      for name, split in bundle.splits.items()
  }
  weights = bundle.class_weights(config.class_balance)
  return {
      "data_format": config.data_format,
      "image_size": config.image_size,
      "labels": list(bundle.labels),
      "counts": counts,
      "totals": {name: len(split) for name, split in bundle.splits.items()},
      "class_weights": ({bundle.labels[i]: round(w, 4) for i, w in weights.items()}
                        if weights else None),
      "oversample": config.oversample,
      "class_balance": config.class_balance,
      "class_priors": {label: round(float(p), 4)
                       for label, p in zip(bundle.labels, bundle.class_priors())},
      "cached_in_memory": not streamed,
      "skipped": report.skipped,
      "converted": report.converted,
      "warnings": report.warnings,
  }


def _write_outputs(bundle: DataBundle, output_dir: str) -> None:
  labels_lib.write_labels(os.path.join(output_dir, "labels.txt"), bundle.labels)
  lines = ["key,label,group,split"]
  for name, split in bundle.splits.items():
    for key, label, group in zip(split.keys, split.labels, split.groups):
      lines.append(",".join(_csv_cell(v) for v in (key, bundle.labels[label], group, name)))
  atomic.write_text(os.path.join(output_dir, "splits.csv"), "\n".join(lines) + "\n")
  atomic.write_json(os.path.join(output_dir, "data_report.json"), bundle.report)


def _csv_cell(value: str) -> str:
  if any(c in value for c in ',"\n'):
    return '"' + value.replace('"', '""') + '"'
  return value


def load_labeled_images(config: DataConfig, work_dir: str, seed: int = 0,
                        only_split: str = "", split_file: str = ""
                        ) -> Tuple[List[str], List[str], np.ndarray, dict]:
  """Every usable image of a dataset (no split), for benchmarks and QA.

  Args:
    config: the data configuration (format, paths, image size).
    work_dir: where a synthetic set is generated.
    seed: for the synthetic set.
    only_split: keep only this split of `split_file` (e.g. "test"); empty keeps all.
    split_file: a build's splits.csv.

  Returns:
    (keys, label names, uint8 images [N, S, S, 3], {"skipped": [...], "converted": [...]}).
  """
  report = _Report(config.strict)
  examples, _ = _read_examples(config, seed, work_dir, report)
  examples = _dedupe_keys(examples, report)
  if only_split:
    assignment = _load_split_assignment(split_file)
    examples = [e for e in examples if assignment.get(e.key) == only_split]
    if not examples:
      raise PipelineError(f"{split_file}: no usable image of the dataset is in split "
                          f"{only_split!r}; is it this dataset's splits.csv?")
  config = dataclasses.replace(config, cache_max_gb=float("inf"))
  examples, pixels, _ = _decode_all(examples, config, report)
  return ([e.key for e in examples], [e.label for e in examples], pixels,
          {"skipped": report.skipped, "converted": report.converted})
