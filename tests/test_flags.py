"""pipeline.build's flags, in process: generated from the config dataclasses, --set for every
other recipe field, former flags named, flags.txt repeating the recipe."""

import dataclasses

import pytest
from absl import flags

from pipeline import build
from pipeline.config import BuildConfig, fields
from pipeline.errors import PipelineError

pytestmark = pytest.mark.fast


def _parse(*args):
  """(config_from_flags, flagfile_text) of `args`, on a fresh copy of the build's flags."""
  values = flags.FlagValues()
  for name in [f.name for f in build.RECIPE_FLAGS + build.RUN_FLAGS] + ["set", "verbose"]:
    values[name] = build.FLAGS[name]
  values.unparse_flags()
  values(["pipeline.build", *args])
  try:
    return build.config_from_flags(values), build.flagfile_text(values)
  finally:
    values.unparse_flags()


def test_every_flag_comes_from_a_config_field_and_there_are_at_most_30():
  names = [f.name for f in build.RECIPE_FLAGS + build.RUN_FLAGS] + ["set", "verbose"]
  assert len(names) == len(set(names)) and len(names) <= 30
  assert all(f.group in fields.GROUPS and f.help for f in build.RECIPE_FLAGS + build.RUN_FLAGS)
  # The flag's default is the field's: the defaults live in one place.
  (config, options), _ = _parse("--output_dir=o")
  assert config == BuildConfig() and options.output_dir == "o"


def test_flags_and_set_reach_the_recipe():
  (config, options), _ = _parse(
      "--output_dir=o", "--finetune_epochs=7", "--qat_epochs=2", "--variants=int8,float32",
      "--malignant_classes=mel", "--nogate", "--set=train.crt_c=0.02",
      "--set=train.qat.learning_rate=1e-4", "--set=data.synthetic_classes=3",
      "--set=train.augment=false", "--set=gate.mcnemar_alpha=0.05", "--rerun_from=qat")
  assert (config.train.finetune.epochs, config.train.qat.epochs, config.export.variants,
          config.referral.malignant_classes, config.gate.enabled, config.train.crt_c,
          config.train.qat.learning_rate, config.data.synthetic_classes, config.train.augment,
          config.gate.mcnemar_alpha) == (7, 2, ("int8", "float32"), ("mel",), False, 0.02,
                                         1e-4, 3, False, 0.05)
  assert options.rerun_from == "qat" and options.resume


@pytest.mark.parametrize("item,needle", [
    ("train.crt_cc=1", "not a recipe field"),
    ("train.crt_c", "not a recipe field"),
    ("train.crt_c=high", "train.crt_c takes a float"),
    ("train.augment=3", "train.augment takes a bool"),
    ("train.finetune.epochs=3", "has its own flag; give --finetune_epochs"),
])
def test_a_bad_set_is_one_clear_error(item, needle):
  with pytest.raises(PipelineError, match=needle):
    _parse("--output_dir=o", f"--set={item}")


def test_flags_txt_repeats_the_recipe_without_per_invocation_flags():
  (config, _), text = _parse("--output_dir=o", "--image_size=64", "--set=train.crt_c=0.05",
                             "--resume", "--stop_after=qat", "--malignant_classes=")
  assert "resume" not in text and "stop_after" not in text and "--set=train.crt_c=0.05" in text
  (again, _), _ = _parse(*text.split())
  assert again == config and again.referral.malignant_classes == ()


@pytest.mark.parametrize("flag,needle", [
    ("--qat_lr=0.1", "--qat_lr is now --set=train.qat.learning_rate=VALUE"),
    ("--nocrt", "--crt is now --set=train.crt=VALUE"),
    ("--finetune_runs=2", "--finetune_runs was removed: measured and not kept"),
])
def test_a_former_flag_says_what_to_give(flag, needle):
  with pytest.raises(SystemExit, match=needle):
    build.parse_flags(["pipeline.build", flag])


def test_an_old_config_with_a_removed_option_reads_or_is_refused_in_one_line():
  saved = BuildConfig().to_dict()
  saved["train"]["finetune_runs"] = 1  # The value every build ran with: today's recipe.
  saved["train"]["finetune"]["weight_decay"] = 0.0
  assert BuildConfig.from_dict(saved) == BuildConfig()
  saved["train"]["oversample"] = True
  with pytest.raises(PipelineError, match="train.oversample = True, an option this version"):
    BuildConfig.from_dict(saved, where="old/config.json")


def test_the_config_fields_with_flags_are_found_in_nested_dataclasses():
  paths = {f.path: f.name for f in fields.flag_fields(BuildConfig)}
  assert paths["train.finetune.epochs"] == "finetune_epochs"
  assert paths["metadata.name"] == "model_name" and paths["gate.enabled"] == "gate"
  assert "train.crt_c" not in paths  # A statistical constant: --set, not a flag.
  assert dataclasses.is_dataclass(BuildConfig)
