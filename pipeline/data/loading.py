"""`load`: the one way to turn a DataConfig into decoded, labeled, split images. Pure: it
writes nothing (the data stage writes labels.txt, splits.csv and data_report.json)."""

import concurrent.futures
import os
from typing import List, Optional, Sequence, Tuple

import numpy as np

from pipeline import images as images_lib
from pipeline import labels as labels_lib
from pipeline.config import DataConfig
from pipeline.data import readers
from pipeline.data import splits as splits_lib
from pipeline.data.dataset import (SPLITS, DataBundle, Example, InputNotes, NoUsableImages,
                                   Split, UnknownClasses)
from pipeline.errors import PipelineError


ALL = "all"  # The one split of an unsplit load.


def load(config: DataConfig, seed: int, split_file: str = "", synthetic_root: str = "",
         only_splits: Sequence[str] = SPLITS, unsplit: bool = False,
         labels: Optional[Sequence[str]] = None) -> DataBundle:
  """Reads, checks, decodes, labels and splits a dataset.

  Args:
    config: the data configuration.
    seed: drives the split.
    split_file: the build's own splits.csv, used as it is (overrides config.split_file,
      which is a split to start from: --train_fraction then subsamples its training images).
    synthetic_root: where the synthetic set was generated (data_format="synthetic").
    only_splits: decode and return only these splits (a benchmark scoring the test split
      need not decode the training images); needs the build's splits.csv.
    unsplit: every usable image as the one split "all" (scoring a held-out set).
    labels: the label list to index (a build's labels.txt, a model's embedded labels), which
      may name classes the images lack. By default the labels are decided from the data:
      all declared classes with usable images, or, with `only_splits` or `unsplit`, the
      classes those images hold (so then pass the build's or model's labels).

  Returns:
    The decoded, split dataset; `notes` lists what was skipped or converted.

  Raises:
    UnknownClasses: `labels` lacks a class of the usable images.
    PipelineError: on input that cannot be used, with the file or row and the fix.
  """
  notes = InputNotes(config.strict)
  examples, declared = readers.read(config, notes, synthetic_root)
  examples = _dedupe_keys(examples, notes)
  own_split = bool(split_file)
  split_file = split_file or config.split_file
  partial = tuple(only_splits) != SPLITS and not unsplit
  if partial:
    if not split_file:
      raise PipelineError("loading only some splits needs the build's splits.csv")
    saved = splits_lib.read_assignment(split_file)
    examples = [e for e in examples if saved.get(e.key) in only_splits]
    if not examples:
      raise PipelineError(f"{split_file}: no usable image of the dataset is in split(s) "
                          f"{', '.join(only_splits)}; is it this dataset's splits.csv?")
  # Decode first: the split is made of the images that decode.
  examples, pixels, streamed = _decode_all(examples, config, notes)
  if labels is None:
    labels = _decide_labels(examples, () if partial else declared, notes)
  else:
    unknown = sorted({e.label for e in examples} - set(labels))
    if unknown:
      raise UnknownClasses(unknown, labels)
  if unsplit:
    only_splits, assignment = (ALL,), {e.key: ALL for e in examples}
  elif split_file:
    assignment = splits_lib.assignment_for(split_file, examples)
  else:
    assignment = splits_lib.assign(examples, config.val_fraction, config.test_fraction, seed)
  if not (own_split or unsplit):
    assignment = splits_lib.subsample_train(examples, assignment, config.train_fraction, seed)
  index = {label: i for i, label in enumerate(labels)}

  bundle_splits = {}
  for name in only_splits:
    chosen = [i for i, e in enumerate(examples) if assignment[e.key] == name]
    if not chosen:
      raise PipelineError(f"the {name} split is empty; add more images (each class needs at "
                          "least 3 lesions/images) or adjust --val_fraction/--test_fraction")
    bundle_splits[name] = Split(
        keys=[examples[i].key for i in chosen],
        paths=[examples[i].path for i in chosen],
        labels=np.array([index[examples[i].label] for i in chosen], np.int32),
        groups=[examples[i].group for i in chosen],
        images=None if streamed else pixels[chosen],
        image_size=config.image_size)
  if "train" in bundle_splits:
    _check_class_coverage(bundle_splits, labels, notes)
  unused = tuple((e.key, e.label, e.group) for e in examples
                 if assignment.get(e.key) == splits_lib.UNUSED)
  return DataBundle(labels=tuple(labels), splits=bundle_splits, image_size=config.image_size,
                    notes=notes, streamed=streamed, unused=unused)


def _check_class_coverage(splits, labels: Sequence[str], notes: InputNotes) -> None:
  """A class needs training images; one missing from validation or test is a warning (its
  figures there are missing), noted in the data report.

  Raises:
    PipelineError: a class with no training image.
  """
  for i, label in enumerate(labels):
    present = {name: int((split.labels == i).sum()) for name, split in splits.items()}
    if not present["train"]:
      where = ", ".join(f"{n} in {name}" for name, n in present.items() if n)
      raise PipelineError(f"class {label!r} has no training image ({where}); add training images "
                          "of it, or remove its images from the other splits")
    for name, n in present.items():
      if not n:
        notes.warn(f"class {label!r} has no image in the {name} split: its {name} figures are "
                   "missing; add images of it")


def _dedupe_keys(examples: List[Example], notes: InputNotes) -> List[Example]:
  seen, kept = set(), []
  for e in examples:
    if e.key in seen:
      notes.skip(e.key, "duplicated image id; the first occurrence is kept")
      continue
    seen.add(e.key)
    kept.append(e)
  return kept


def _decode_all(examples: List[Example], config: DataConfig,
                notes: InputNotes) -> Tuple[List[Example], Optional[np.ndarray], bool]:
  """Decodes every image once, in parallel, so no bad file ever reaches tf.data.

  Returns:
    (usable examples, uint8 pixels or None when too large to cache, streamed flag).
  """
  size = config.image_size
  budget = config.cache_max_gb * 1e9
  streamed = len(examples) * size * size * 3 > budget
  if streamed:
    notes.warn(f"decoded images exceed --cache_max_gb={config.cache_max_gb}: streaming "
                "from disk each epoch")

  def decode(e: Example):
    if e.pixels is not None:
      from PIL import Image  # pylint: disable=g-import-not-at-top
      img = Image.fromarray(e.pixels).resize((size, size), Image.BILINEAR)
      return np.asarray(img, np.uint8), ""
    return images_lib.load_rgb(e.path, size)

  workers = os.cpu_count() or 1
  keep, pixels = [], []
  with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
    futures = [pool.submit(decode, e) for e in examples]
    for e, future in zip(examples, futures):
      try:
        arr, note = future.result()
      except images_lib.ImageError as err:
        notes.skip(e.path or e.key, str(err))
        continue
      if note:
        notes.converted.append({"item": e.path or e.key, "note": note})
      keep.append(e)
      if not streamed:
        pixels.append(arr)
  if not keep:
    raise NoUsableImages(f"the dataset has no usable image: {notes.skipped_summary()}; check "
                         "--data_dir, --metadata_csv and --data_format", notes)
  stacked = None if streamed else np.stack(pixels)
  return keep, stacked, streamed


def _decide_labels(examples: List[Example], declared: Sequence[str],
                   notes: InputNotes) -> List[str]:
  """The ordered label list, decided once, from the data, sorted so it is stable."""
  present = sorted({e.label for e in examples})
  for cls in declared:
    if cls not in present:
      message = f"class {cls!r} has no usable images"
      if notes.strict:
        raise PipelineError(f"{message} (--strict); add images or remove the class folder")
      notes.warn(message + "; it is left out of the label list")
  if len(present) < 2:
    raise PipelineError(f"only {len(present)} class has usable images ({', '.join(present)}); "
                        "a classifier needs at least 2")
  for label in present:
    labels_lib.check_label(label)
  return present
