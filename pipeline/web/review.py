"""What the Review page shows, computed once at start-up from a build directory: the test
split re-read with the build's own config.json and splits.csv, scored by its int8 and
float32 models through the LiteRT runner."""

import dataclasses
import json
import os
from typing import List, Optional

import numpy as np
from sklearn import metrics as skm

from pipeline.config import model_file_name
from pipeline.errors import PipelineError
from pipeline.runner import load_model_file

MODELS = ("int8", "float32")


@dataclasses.dataclass
class Review:
  """The build's test split, both models' probabilities and the report's gate verdict."""
  build_dir: str
  labels: List[str]
  names: List[str]
  keys: List[str]
  y: np.ndarray                 # True class index per image.
  probs: dict                   # {"int8": [N, C], "float32": [N, C]}.
  pixels: np.ndarray            # uint8 [N, S, S, 3], served as PNG by index only.
  gate: Optional[dict] = None   # report.json's "gate", when the build got that far.

  def predicted(self, model: str) -> np.ndarray:
    return self.probs[model].argmax(axis=1)

  def confusion(self, model: str = "int8") -> np.ndarray:
    return skm.confusion_matrix(self.y, self.predicted(model), labels=range(len(self.labels)))

  def per_class(self) -> List[dict]:
    """Per class: support, then recall and precision of each model."""
    rows = [{"label": l, "name": n, "support": int((self.y == i).sum())}
            for i, (l, n) in enumerate(zip(self.labels, self.names))]
    for model in MODELS:
      precision, recall, _, _ = skm.precision_recall_fscore_support(
          self.y, self.predicted(model), labels=range(len(self.labels)), zero_division=0)
      for row, p, r in zip(rows, precision, recall):
        row[f"{model}_precision"], row[f"{model}_recall"] = float(p), float(r)
    return rows

  def summary(self) -> dict:
    return {m: {"accuracy": float((self.predicted(m) == self.y).mean()),
                "balanced_accuracy": float(skm.balanced_accuracy_score(self.y, self.predicted(m)))}
            for m in MODELS}

  def card(self, i: int) -> dict:
    """One image as the galleries show it: key, truth, each model's top 2."""
    card = {"index": i, "key": self.keys[i], "truth": self.names[self.y[i]]}
    for model in MODELS:
      p = self.probs[model][i]
      card[model] = [(self.names[j], float(p[j]), j == self.y[i]) for j in np.argsort(-p)[:2]]
    return card

  def disagreements(self) -> List[int]:
    """Images whose int8 and float32 top-1 differ, the surest float32 first."""
    idx = np.flatnonzero(self.predicted("int8") != self.predicted("float32"))
    return sorted(idx.tolist(), key=lambda i: -self.probs["float32"][i].max())

  def misclassified(self) -> List[int]:
    """Images int8 gets wrong, the most confident mistakes first."""
    idx = np.flatnonzero(self.predicted("int8") != self.y)
    return sorted(idx.tolist(), key=lambda i: -self.probs["int8"][i].max())


def load(build_dir: str) -> Review:
  """Re-reads the build's test split and scores it with its int8 and float32 models.

  Raises:
    PipelineError: not a finished build directory, or its dataset is no longer readable.
  """
  from pipeline import config as config_lib  # pylint: disable=g-import-not-at-top
  from pipeline.data import loading  # pylint: disable=g-import-not-at-top
  needed = config_lib.build_files(
      build_dir, [config_lib.CONFIG_FILE, "splits.csv", *(model_file_name(m) for m in MODELS)],
      "its export and metadata stages")
  paths = dict(zip(MODELS, needed[2:]))
  config = config_lib.BuildConfig.load(needed[0])
  runners = {m: load_model_file(p) for m, p in paths.items()}
  meta = runners["int8"][1]
  labels = list(meta["labels"])
  try:
    bundle = loading.load(config.data, config.seed, split_file=needed[1],
                          synthetic_root=os.path.join(build_dir, "synthetic_data"),
                          only_splits=("test",), labels=labels)
  except loading.UnknownClasses as e:
    raise PipelineError(f"--build_dir={build_dir}: test labels {e.classes} are not the model's "
                        f"{labels}; the build directory holds files of different builds") from None
  test = bundle.splits["test"]
  y = test.labels.astype(np.int64)
  pixels = test.pixels()
  gate = None
  report_path = os.path.join(build_dir, "report.json")
  if os.path.isfile(report_path):
    with open(report_path, encoding="utf-8") as f:
      gate = json.load(f).get("gate")
  return Review(build_dir=build_dir, labels=labels,
                names=list(meta["display_names"] or labels), keys=list(test.keys), y=y,
                probs={m: runner.predict(pixels) for m, (runner, _) in runners.items()},
                pixels=pixels, gate=gate)
