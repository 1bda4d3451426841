"""What a loaded dataset is: examples, splits of decoded images, and the notes on bad input."""

import collections
import dataclasses
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from pipeline import images as images_lib
from pipeline.errors import PipelineError

SPLITS = ("train", "val", "test")
UNUSED = "unused"  # splits.csv's name for an image a build left out (--train_fraction).


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
  image_size: int = 0

  def __len__(self) -> int:
    return len(self.keys)

  def pixels(self, indices: Optional[np.ndarray] = None) -> np.ndarray:
    """uint8 images [n, S, S, 3] of the split (all, or `indices`): from memory, or decoded
    from disk (already validated by the data stage) when the split is streamed."""
    if indices is None:
      indices = np.arange(len(self))
    if self.images is not None:
      return self.images[indices]
    return np.stack([images_lib.load_rgb(self.paths[int(i)], self.image_size)[0]
                     for i in indices]).reshape(-1, self.image_size, self.image_size, 3)


@dataclasses.dataclass
class DataBundle:
  """What the data stage hands to the rest of the build."""
  labels: Tuple[str, ...]
  splits: Dict[str, Split]
  image_size: int
  notes: "InputNotes"
  streamed: bool = False  # Images are decoded from disk each epoch (over --cache_max_gb).
  unused: Tuple[Tuple[str, str, str], ...] = ()  # (key, label, group) of images left out.

  def train_counts(self) -> np.ndarray:
    """Images per class in the training split, in label order."""
    return np.bincount(self.splits["train"].labels, minlength=len(self.labels))

  def counts(self) -> Dict[str, Dict[str, int]]:
    """{split: {label: images}}."""
    return {name: {label: int((split.labels == i).sum()) for i, label in enumerate(self.labels)}
            for name, split in self.splits.items()}


class InputNotes:
  """Skipped and converted inputs and warnings, collected as the data is read."""

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

  def skipped_summary(self, examples: int = 2) -> str:
    """"N skipped: 10 no image file ..., 2 not an image (e.g. a.jpg: ...)", most common first."""
    if not self.skipped:
      return "0 skipped"
    # Decoders name the file in their message; count the reason, not the file.
    counts = collections.Counter(s["reason"].replace(s["item"], "FILE") for s in self.skipped)
    kinds = "; ".join(f"{n} x {reason}" for reason, n in counts.most_common(3))
    more = f"; {len(counts) - 3} other reasons" if len(counts) > 3 else ""
    shown = ", ".join(s["item"] for s in self.skipped[:examples])
    return f"{len(self.skipped)} skipped ({kinds}{more}; e.g. {shown})"


class UnknownClasses(PipelineError):
  """The data holds classes that the label list it was loaded against lacks."""

  def __init__(self, classes: Sequence[str], labels: Sequence[str]):
    super().__init__(f"the data has classes {list(classes)} that the labels "
                     f"({', '.join(labels)}) lack")
    self.classes = list(classes)


class NoUsableImages(PipelineError):
  """The dataset has no usable image; carries the notes that say why."""

  def __init__(self, message: str, notes: InputNotes):
    super().__init__(message)
    self.notes = notes
