"""labels.txt, the single source of the class order, and the display names beside it."""

import json
import os
from typing import Dict, Sequence, Tuple

from pipeline import atomic
from pipeline.errors import PipelineError
from pipeline.shipped import LABELS_FILE

FILE_NAME = LABELS_FILE
# Package data: found in a non-editable install too.
METADATA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "metadata")


def check_label(label: str) -> None:
  """Raises PipelineError if `label` cannot be one line of labels.txt."""
  if not label or label != label.strip() or "\n" in label or "\r" in label:
    raise PipelineError(f"class name {label!r} is empty or has surrounding whitespace or a "
                        "line break; rename the class")


def write_labels(path: str, labels: Sequence[str]) -> None:
  """Writes one label per line, in model output order."""
  for label in labels:
    check_label(label)
  atomic.write_text(path, "".join(label + "\n" for label in labels))


def read_labels(path: str) -> Tuple[str, ...]:
  """Reads labels.txt; every stage after `data` takes the class order from here."""
  if not os.path.isfile(path):
    raise PipelineError(f"{path}: labels.txt not found; run the data stage first")
  with open(path, encoding="utf-8") as f:
    labels = tuple(line.rstrip("\n") for line in f if line.strip())
  if len(labels) < 2:
    raise PipelineError(f"{path}: needs at least 2 labels, found {len(labels)}")
  return labels


def metadata_defaults(data_format: str) -> Dict[str, str]:
  """pipeline/metadata/defaults.json: the model-info and model-card texts, with a data format's own
  overrides (the synthetic demo is not a skin model)."""
  with open(os.path.join(METADATA_DIR, "defaults.json"), encoding="utf-8") as f:
    defaults = json.load(f)
  defaults.update(defaults.pop("by_data_format", {}).get(data_format, {}))
  return defaults


_CLASS_INFO_SHAPE = ('JSON {"label": {"display_name": "...", "description": "..."}} or '
                     '{"label": "display name"}')


def load_class_info(path: str = "") -> Dict[str, dict]:
  """Loads {label: {"display_name": ..., "description": ...}} from a JSON file.

  Args:
    path: a JSON file; empty reads every pipeline/metadata/classes_*.json shipped with the tool.

  Returns:
    The merged table (missing labels simply are not in it).
  """
  if path:
    paths = [path]
  elif os.path.isdir(METADATA_DIR):
    paths = sorted(os.path.join(METADATA_DIR, n) for n in os.listdir(METADATA_DIR)
                   if n.startswith("classes_") and n.endswith(".json"))
  else:
    paths = []
  table: Dict[str, dict] = {}
  for p in paths:
    data = atomic.read_json(p, "display names: it must be " + _CLASS_INFO_SHAPE)
    if not isinstance(data, dict):
      raise PipelineError(f"{p}: display names must be {_CLASS_INFO_SHAPE}, not a JSON "
                          f"{type(data).__name__}")
    for label, info in data.items():
      info = {"display_name": info} if isinstance(info, str) else info
      if not (isinstance(info, dict) and isinstance(info.get("display_name", ""), str)
              and isinstance(info.get("description", ""), str)):
        raise PipelineError(f"{p}: label {label!r}: display names must be "
                            f"{_CLASS_INFO_SHAPE} (display_name and description strings)")
      table[label] = info
  return table


def display_names(labels: Sequence[str], path: str = "") -> Tuple[str, ...]:
  """Display names in label order; a label without one falls back to itself."""
  info = load_class_info(path)
  return tuple(info.get(label, {}).get("display_name", label) for label in labels)
