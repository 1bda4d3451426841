"""Which stage first reads each setting: what `--rerun_from=STAGE` may change.

A build re-run from a stage keeps the results of the stages before it, so a setting that one
of those stages read must stay as it was; settings read only from STAGE on may change.
"""

from typing import Any, Iterator, List, Tuple

from pipeline.config.choices import STAGES, stage_index

# Dotted setting path -> the first stage that reads it. A path not listed falls back to its
# section (so a new field of a section is covered by the section's stage, the earliest one
# that reads any of it); the whole recipe falls back to "data" (anything unknown: rerun all).
FIRST_READER = {
    "seed": "data", "deterministic": "data", "data": "data",
    "model": "transfer",
    "train": "transfer",  # batch_size, class_weight, augment, strategy, transfer*
    "train.finetune": "finetune", "train.finetune_layers": "finetune",
    "train.finetune_class_weight": "finetune",
    "train.crt": "crt", "train.crt_c": "crt",
    "train.qat": "qat",
    "export": "export", "export.calibration_images": "qat",  # QAT calibrates its ranges on them.
    "metadata": "metadata",
    "referral": "evaluate",
    "gate": "gate",
}


def first_reader(path: str) -> str:
  """The first stage that reads the setting at dotted `path` (e.g. "train.qat.epochs")."""
  while path not in FIRST_READER:
    if "." not in path:
      return STAGES[0]
    path = path.rsplit(".", 1)[0]
  return FIRST_READER[path]


def changed_settings(saved: dict, current: dict, prefix: str = "") -> Iterator[str]:
  """Dotted paths of the leaf settings that differ between two `BuildConfig.to_dict()`s."""
  for key in sorted(set(saved) | set(current)):
    a, b = saved.get(key), current.get(key)
    path = f"{prefix}{key}"
    if isinstance(a, dict) and isinstance(b, dict):
      yield from changed_settings(a, b, path + ".")
    elif a != b:
      yield path


def setting(config: dict, path: str) -> Any:
  """The value at dotted `path` of a `BuildConfig.to_dict()` (None where it has none)."""
  for key in path.split("."):
    config = config.get(key) if isinstance(config, dict) else None
  return config


def read_before(saved: dict, current: dict, stage: str) -> List[Tuple[str, str]]:
  """(setting, stage that read it) for each changed setting a stage before `stage` read."""
  first = stage_index(stage)
  return [(path, first_reader(path)) for path in changed_settings(saved, current)
          if stage_index(first_reader(path)) < first]
