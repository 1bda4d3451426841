"""Scoring models on labeled images, shared by the accuracy and headroom benchmarks (no
flags here: each entry point defines its own)."""

import os
import tempfile
from typing import Callable, Dict, List

import numpy as np


class ScoringSet:
  """Models loaded once, and the labeled images of one or more splits to score them on.

  Each model's outputs are mapped to class names with the labels embedded in it, so a
  model with a wrong label order scores as badly as it would in an app.
  """

  def __init__(self, models: List[str], dataset, splits: List[str]):
    """Loads every model and the images of `splits` of the dataset's split file (or, without
    one, every image as the one split "all"); `dataset` is a common.Dataset.

    Raises:
      PipelineError: unreadable models, models with different label sets, or data with
        classes the models do not know.
    """
    import dataclasses  # pylint: disable=g-import-not-at-top
    from pipeline import data as data_lib  # pylint: disable=g-import-not-at-top
    from pipeline import synthetic  # pylint: disable=g-import-not-at-top
    from pipeline.errors import PipelineError  # pylint: disable=g-import-not-at-top
    from pipeline.runner import load_model_file  # pylint: disable=g-import-not-at-top
    self.runners = {}
    self.model_labels: Dict[str, list] = {}
    for path in models:
      self.runners[path], meta = load_model_file(path)
      self.model_labels[path] = meta["labels"]
    self.labels = sorted(set(self.model_labels[models[0]]))
    for path in models:
      if sorted(self.model_labels[path]) != self.labels:
        raise PipelineError(f"{path}: its labels {self.model_labels[path]} differ from "
                            f"{models[0]}'s")
    self.y_true: Dict[str, np.ndarray] = {}
    self.pixels: Dict[str, Dict[int, np.ndarray]] = {}  # split -> image size -> images
    split_file = dataset.split_file
    splits = splits if split_file else [data_lib.ALL]
    with tempfile.TemporaryDirectory() as work:
      for split in splits:
        self.pixels[split] = {}
        for size in sorted({r.image_size for r in self.runners.values()}):
          # Decoded images of a benchmark always stay in memory.
          cfg = dataclasses.replace(dataset.config, image_size=size, cache_max_gb=float("inf"))
          root = dataset.synthetic_root
          if cfg.data_format == "synthetic" and not root:
            root = work
            synthetic.write_dataset(root, cfg.synthetic_classes, cfg.synthetic_per_class, size,
                                    0)
          try:
            bundle = data_lib.load(cfg, 0, split_file=split_file, synthetic_root=root,
                                   only_splits=(split,), unsplit=not split_file,
                                   labels=self.labels)
          except data_lib.UnknownClasses as e:
            raise PipelineError(f"the data has classes {e.classes} that the model "
                                f"{models[0]} does not know ({self.labels})") from None
          self.pixels[split][size] = bundle.splits[split].pixels()
        self.y_true[split] = bundle.splits[split].labels.astype(np.int64)

  def probs(self, path: str, split: str, view: Callable = lambda x: x) -> np.ndarray:
    """Probabilities [N, K] of one model on one split (in `labels` order), each image first
    passed through `view` (e.g. a flip)."""
    runner = self.runners[path]
    p = runner.predict(view(self.pixels[split][runner.image_size]))
    return p[:, [self.model_labels[path].index(l) for l in self.labels]]


def display_names(paths: List[str]) -> Dict[str, str]:
  """Short, unique names for report rows: the file name, or parent/file name where two
  models share a file name (model_float.keras of several builds)."""
  base = [os.path.basename(p) for p in paths]
  return {p: b if base.count(b) == 1 else os.path.join(
      os.path.basename(os.path.dirname(os.path.abspath(p))), b) for p, b in zip(paths, base)}
