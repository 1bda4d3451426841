r"""Builds an int8 TFLite classifier with metadata from labeled images, in one command.

Stages, in order: data, transfer, finetune, crt, qat, export, metadata, evaluate, gate,
assets (pipeline/stages/__init__.py says what each makes).

  python -m pipeline.build --data_format=ham10000 \
      --data_dir=../shared/data/ham10000_dev/images \
      --metadata_csv=../shared/data/ham10000_dev/HAM10000_metadata.csv \
      --weights=../shared/weights/mobilenet_v2_1.0_imagenet_no_top.h5 --output_dir=build/ham

This file is the only one in `pipeline/` that reads flags: everything else takes a
BuildConfig and RunOptions (see pipeline/config/), which is written to
OUTPUT_DIR/config.json and, as flags, to OUTPUT_DIR/flags.txt so that
`--flagfile=OUTPUT_DIR/flags.txt` repeats the build.
"""

import json
import os
import sys
from typing import Any, Dict, List, Tuple

from absl import app
from absl import logging
from absl import flags

from pipeline.config import BuildConfig, RunOptions
from pipeline.config import fields
from pipeline.errors import PipelineError

# The flags are generated from the config dataclasses' fields (pipeline/config/fields.py):
# the recipe's (BuildConfig) and the run's (RunOptions). Every other recipe field is set by its
# dotted path with --set.
RECIPE_FLAGS = tuple(fields.flag_fields(BuildConfig))
RUN_FLAGS = tuple(fields.flag_fields(RunOptions))
# How far this invocation goes and how it treats the folder: not the build, so not in flags.txt
# (`--flagfile=BUILD/flags.txt --rerun_from=X` of a build stopped early runs to the end).
_PER_INVOCATION = ("resume", "rerun_from", "overwrite", "stop_after")


def _define(f: fields.FlagField) -> None:
  help_text = f"[{f.group}] {f.help}"
  if f.choices:
    flags.DEFINE_enum(f.name, f.default or None, f.choices, help_text)
  elif isinstance(f.default, bool):
    flags.DEFINE_bool(f.name, f.default, help_text)
  elif isinstance(f.default, int):
    flags.DEFINE_integer(f.name, f.default, help_text)
  elif isinstance(f.default, float):
    flags.DEFINE_float(f.name, f.default, help_text)
  elif f.default is None or isinstance(f.default, tuple):
    flags.DEFINE_list(f.name, None if f.default is None else list(f.default), help_text)
  else:
    flags.DEFINE_string(f.name, f.default, help_text)


for _field in sorted(RECIPE_FLAGS + RUN_FLAGS, key=lambda f: fields.GROUPS.index(f.group)):
  _define(_field)
flags.DEFINE_multi_string(
    "set", [], "[run] Any other recipe field by its dotted path in config.json, e.g. "
    "--set=train.crt_c=0.02 or --set=gate.mcnemar_alpha=0.05 (repeatable; values in JSON or "
    "plain text).")
# Per invocation, so not in flags.txt.
flags.DEFINE_bool("verbose", False, "[run] Show TensorFlow's and the TFLite converter's own log "
                  "lines (hidden unless the call they come from fails).")

FLAGS = flags.FLAGS

# Flags of earlier versions: the recipe field a --set now reaches, or None where the option
# was measured and removed (BUILD.md, "What we measured").
_FORMER_FLAGS = {
    "val_fraction": "data.val_fraction", "test_fraction": "data.test_fraction",
    "train_fraction": "data.train_fraction", "hmnist_labels": "data.hmnist_labels",
    "cache_max_gb": "data.cache_max_gb", "synthetic_classes": "data.synthetic_classes",
    "synthetic_per_class": "data.synthetic_per_class", "dropout": "model.dropout",
    "transfer_lr": "train.transfer.learning_rate", "qat_lr": "train.qat.learning_rate",
    "warmup_epochs": "train.finetune.warmup_epochs",
    "label_smoothing": "train.finetune.label_smoothing", "crt": "train.crt",
    "crt_c": "train.crt_c", "class_weight": "train.class_weight",
    "finetune_class_weight": "train.finetune_class_weight", "augment": "train.augment",
    "io_dtype": "export.io_dtype", "calibration_images": "export.calibration_images",
    "model_description": "metadata.description", "model_version": "metadata.version",
    "model_author": "metadata.author", "model_license": "metadata.license",
    "deterministic": "deterministic", "gate_min_agreement": "gate.min_top1_agreement",
    "gate_max_bacc_drop": "gate.max_balanced_accuracy_drop",
    "gate_mcnemar_alpha": "gate.mcnemar_alpha", "gate_max_flip_margin": "gate.max_flip_margin",
    "gate_min_wrong_lead": "gate.min_wrong_lead",
    "gate_bootstrap_rounds": "gate.bootstrap_rounds",
    "finetune_runs": None, "finetune_weight_decay": None, "finetune_keep": None,
    "oversample": None, "qat_target": None, "transfer_mode": None}


def parse_flags(argv: List[str]) -> List[str]:
  """absl's flag parsing, with a bad or former flag as one line (what, and what to give)."""
  try:
    return FLAGS(argv)
  except flags.Error as e:
    message = str(e)
    for name, field in _FORMER_FLAGS.items():
      if f"'{name}'" in message or f"'no{name}'" in message:
        message = (f"--{name} is now --set={field}=VALUE" if field else
                   f"--{name} was removed: measured and not kept (BUILD.md, \"What we "
                   "measured\")")
        break
    sys.exit(f"pipeline.build: error: {message}; see --helpfull")


def _assign(d: dict, path: str, value: Any) -> None:
  *parents, leaf = path.split(".")
  for key in parents:
    d = d[key]
  d[leaf] = value


def _settings(items: List[str], flag_paths: Dict[str, str]) -> List[Tuple[str, Any]]:
  """(path, value) of each --set=PATH=VALUE.

  Raises:
    PipelineError: not PATH=VALUE, a path that is not a recipe field, or one with a flag.
  """
  known = dict(_leaves(BuildConfig().to_dict()))
  out = []
  for item in items:
    path, sep, text = item.partition("=")
    path = path.strip()
    if not sep or path not in known:
      raise PipelineError(f"--set={item}: not a recipe field; use --set=PATH=VALUE with a "
                          "dotted path of config.json, e.g. --set=train.crt_c=0.02")
    if path in flag_paths:
      raise PipelineError(f"--set={item}: {path} has its own flag; give --{flag_paths[path]}")
    try:
      value = json.loads(text)
    except ValueError:
      value = text  # A plain string.
    if isinstance(known[path], float) and isinstance(value, int) and not isinstance(value, bool):
      value = float(value)
    if known[path] is not None and type(value) is not type(known[path]) and not (
        isinstance(known[path], list) and isinstance(value, list)):
      raise PipelineError(f"--set={item}: {path} takes a {type(known[path]).__name__}, "
                          f"e.g. --set={path}={json.dumps(known[path])}")
    out.append((path, value))
  return out


def _leaves(d: dict, prefix: str = "") -> List[Tuple[str, Any]]:
  out = []
  for key, value in d.items():
    if isinstance(value, dict):
      out += _leaves(value, f"{prefix}{key}.")
    else:
      out.append((prefix + key, value))
  return out


def _flag_value(f: fields.FlagField, values: flags.FlagValues) -> Any:
  value = values[f.name].value
  if f.choices and value is None:
    return ""
  return list(value) if isinstance(value, (list, tuple)) else value


def config_from_flags(f: flags.FlagValues) -> Tuple[BuildConfig, RunOptions]:
  """The validated recipe and run options of parsed flags.

  Raises:
    PipelineError: an invalid value or --set.
  """
  recipe = BuildConfig().to_dict()
  for field in RECIPE_FLAGS:
    _assign(recipe, field.path, _flag_value(field, f))
  for path, value in _settings(f.set, {x.path: x.name for x in RECIPE_FLAGS}):
    _assign(recipe, path, value)
  config = BuildConfig.from_dict(recipe, where="the flags")
  options = RunOptions(**{x.path: _flag_value(x, f) for x in RUN_FLAGS})
  return config.validate(), options.validate()


def flagfile_text(f: flags.FlagValues) -> str:
  """The build's flags in --flagfile form (without --resume, --rerun_from, --overwrite and
  --stop_after, which are per invocation)."""
  names = [x.name for x in RECIPE_FLAGS + RUN_FLAGS if x.name not in _PER_INVOCATION] + ["set"]
  lines = [f[name].serialize() for name in names]
  # A list flag left to its dataset-dependent default (None) serializes as "".
  return "\n".join(line for line in lines if line) + "\n"


def main(argv: List[str]) -> None:
  logging.set_verbosity(logging.WARNING)  # TensorFlow's checkpoint INFO lines drown progress.
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  try:
    if FLAGS.verbose:
      os.environ["PIPELINE_VERBOSE"] = "1"  # Read by pipeline.quiet.
    config, options = config_from_flags(FLAGS)
    from pipeline import stages  # pylint: disable=g-import-not-at-top  (imports TensorFlow)
    stages.run(config, options, flags_text=flagfile_text(FLAGS))
  except PipelineError as e:
    sys.exit(f"pipeline.build: error: {e}")
  except OSError as e:  # An output path that cannot be written: /proc/x, under a file, full disk.
    where = e.filename or FLAGS.output_dir
    sys.exit(f"pipeline.build: error: {where}: {e.strerror or e}; choose a writable "
             "--output_dir (and --assets_dir)")
  except KeyboardInterrupt:
    sys.exit("pipeline.build: interrupted; rerun with --resume to continue")


def entry_point() -> None:
  """Console script `tflite-build`."""
  app.run(main, flags_parser=parse_flags)


if __name__ == "__main__":
  entry_point()
