"""Which config fields are command-line flags: each one's flag name, group and help live
beside the field, so pipeline.build generates its flags and never maps a field by hand.

A field without flag metadata is still part of the recipe (config.json), and a flagfile or
the command line sets it by its dotted path: --set=train.crt_c=0.02.
"""

import dataclasses
from typing import Any, Dict, Iterator, NamedTuple, Optional, Tuple

GROUPS = ("data", "training", "export", "quality", "run")


def flag(default: Any, group: str, help_text: str, name: str = "",
         choices: Optional[Tuple[str, ...]] = None) -> Any:
  """A dataclass field that is also the flag --NAME (default: the field's name)."""
  assert group in GROUPS, group
  return dataclasses.field(default=default, metadata={
      "flag": name, "group": group, "help": help_text, "choices": choices})


def phase_flags(default: Any, **flags: Tuple[str, str]) -> Any:
  """A PhaseConfig field whose sub-fields are flags: epochs=("transfer_epochs", "help")."""
  return dataclasses.field(default=default, metadata={"flags": flags, "group": "training"})


class FlagField(NamedTuple):
  path: str  # Dotted path in the config's to_dict(), e.g. "train.finetune.epochs".
  name: str  # The flag, e.g. "finetune_epochs".
  default: Any
  group: str
  help: str
  choices: Optional[Tuple[str, ...]]


def flag_fields(cls: Any, prefix: str = "") -> Iterator[FlagField]:
  """Every field of dataclass `cls` (and of the dataclasses it holds) that is a flag."""
  for f in dataclasses.fields(cls):
    meta: Dict[str, Any] = dict(f.metadata)
    if "flag" in meta:
      yield FlagField(prefix + f.name, meta["flag"] or f.name, f.default, meta["group"],
                      meta["help"], meta["choices"])
    elif "flags" in meta:
      for sub, (name, help_text) in meta["flags"].items():
        yield FlagField(f"{prefix}{f.name}.{sub}", name, getattr(f.default, sub),
                        meta["group"], help_text, None)
    elif isinstance(f.type, type) and dataclasses.is_dataclass(f.type):
      yield from flag_fields(f.type, f"{prefix}{f.name}.")
