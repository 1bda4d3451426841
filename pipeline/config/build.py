"""A build's recipe (BuildConfig, saved as config.json and loaded back) and its run options."""

import dataclasses
import os
from typing import Any

from pipeline.config.choices import STAGES, check_choice
from pipeline.config.data import DataConfig
from pipeline.config.export import ExportConfig, MetadataConfig
from pipeline.config.fields import flag
from pipeline.config.quality import GateConfig, ReferralConfig
from pipeline.config.train import ModelConfig, PhaseConfig, TrainConfig
from pipeline.errors import PipelineError

CONFIG_FILE = "config.json"
# Settings whose default changed after they were added -> the value a record saved before
# they existed ran with (it lacks them; the new default would misread it).
_FIRST_DEFAULTS = {("train", "finetune_class_weight"): ""}
# Options measured and removed -> the value every build ran with unless it asked otherwise
# (BUILD.md, "What we measured"). A record at that value reads as today's recipe.
_REMOVED = {("train", "finetune_runs"): 1, ("train", "finetune_keep"): "last",
            ("train", "oversample"): False, ("train", "qat_target"): "float_model",
            ("train", "transfer_mode"): "cached_features",
            ("train", "transfer", "weight_decay"): 0.0, ("train", "finetune", "weight_decay"): 0.0,
            ("train", "qat", "weight_decay"): 0.0}


def build_files(build_dir: str, names, finished: str) -> list:
  """The paths of `names` in a build's output directory, which must all exist.

  Raises:
    PipelineError: naming the missing files and which build to give (one that got past
      `finished`).
  """
  paths = [os.path.join(build_dir, n) for n in names]
  missing = [n for n, p in zip(names, paths) if not os.path.isfile(p)]
  if missing:
    raise PipelineError(f"--build_dir={build_dir}: no {', '.join(missing)}; give the output "
                        f"directory of a build that got past {finished}")
  return paths


@dataclasses.dataclass(frozen=True)
class BuildConfig:
  """The recipe: everything that decides what a build produces. Where it writes and how far
  it runs are RunOptions; the same recipe always gives the same kind of model."""
  seed: int = flag(42, "run", "Seed of the split, the data order and the initialization.")
  # TensorFlow op determinism: the same seed then gives bit-identical weights (without it the
  # split and labels repeat but CPU training does not).
  deterministic: bool = False
  data: DataConfig = DataConfig()
  model: ModelConfig = ModelConfig()
  train: TrainConfig = TrainConfig()
  export: ExportConfig = ExportConfig()
  metadata: MetadataConfig = MetadataConfig()
  gate: GateConfig = GateConfig()
  referral: ReferralConfig = ReferralConfig()

  def validate(self) -> "BuildConfig":
    """Checks every field once; returns self so it can be chained.

    Raises:
      PipelineError: on the first invalid field, naming it and the valid values.
    """
    self.data.validate()
    self.model.validate()
    self.train.validate()
    self.export.validate()
    self.metadata.validate()
    self.gate.validate()
    self.referral.validate()
    return self

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)

  def save(self, path: str) -> None:
    from pipeline import atomic  # pylint: disable=g-import-not-at-top
    atomic.write_json(path, self.to_dict())

  @classmethod
  def from_dict(cls, d: dict, where: str = "config") -> "BuildConfig":
    """The BuildConfig that `to_dict` gave `d` (unknown fields are an error). A field `d`
    lacks takes its default, which is what a record saved before the field existed did, or
    its first default (_FIRST_DEFAULTS) where the default changed since."""
    if isinstance(d, dict):
      d = {**d, **{section: {name: value, **d[section]}
                   for (section, name), value in _FIRST_DEFAULTS.items()
                   if isinstance(d.get(section), dict)}}
      d = _without_removed(d, where)
    return _from_dict(cls, d, where)

  @classmethod
  def load(cls, path: str) -> "BuildConfig":
    """Reads a build's config.json back.

    Raises:
      PipelineError: unreadable file, or fields this version does not know.
    """
    from pipeline import atomic  # pylint: disable=g-import-not-at-top
    return cls.from_dict(atomic.read_json(path, "the build config"), where=path)


@dataclasses.dataclass(frozen=True)
class RunOptions:
  """How one invocation runs a recipe: where it writes, how far, and whether it resumes."""
  output_dir: str = flag("", "run", "Where the build writes everything (a new or empty "
                         "folder, or a build's with --resume, --rerun_from or --overwrite).")
  assets_dir: str = flag("", "run", "Where the drop-in app folder goes (default: "
                         "OUTPUT_DIR/android_assets).")
  stop_after: str = flag("assets", "run", "Run the stages up to and including this one.",
                         choices=STAGES)
  resume: bool = flag(False, "run", "Continue a killed build with the same flags: finished "
                      "stages are reused, the interrupted phase goes on from its last epoch.")
  rerun_from: str = flag("", "run", "Redo this stage and the later ones of the build in "
                         "--output_dir, keeping the earlier ones (e.g. --rerun_from=qat "
                         "--qat_epochs=5); settings earlier stages read must not change.",
                         choices=STAGES)
  overwrite: bool = flag(False, "run", "Replace the build already in --output_dir (its files "
                         "are deleted first).")

  def validate(self) -> "RunOptions":
    """Checks the options; returns them with the assets directory resolved (and resume set
    when rerun_from is)."""
    if not self.output_dir:
      raise PipelineError("--output_dir is required")
    check_choice("stop_after", self.stop_after, STAGES)
    options = self
    if self.overwrite and (self.resume or self.rerun_from):
      raise PipelineError("--overwrite starts the build in --output_dir anew; it cannot go "
                          "with --resume or --rerun_from, which continue it")
    if self.rerun_from:
      check_choice("rerun_from", self.rerun_from, STAGES)
      if STAGES.index(self.rerun_from) > STAGES.index(self.stop_after):
        raise PipelineError(f"--rerun_from={self.rerun_from} comes after --stop_after="
                            f"{self.stop_after}: nothing would run")
      options = dataclasses.replace(options, resume=True)
    return options if options.assets_dir else dataclasses.replace(
        options, assets_dir=os.path.join(options.output_dir, "android_assets"))


def _without_removed(d: dict, where: str) -> dict:
  """`d` without the removed options it holds at the value builds ran with.

  Raises:
    PipelineError: a removed option at another value: this version cannot run that recipe.
  """
  import copy  # pylint: disable=g-import-not-at-top
  d = copy.deepcopy(d)
  for path, default in _REMOVED.items():
    parent = d
    for key in path[:-1]:
      parent = parent.get(key) if isinstance(parent, dict) else None
    if not isinstance(parent, dict) or path[-1] not in parent:
      continue
    value = parent.pop(path[-1])
    if value != default and not (isinstance(default, float) and value == 0):
      raise PipelineError(f"{where}: {'.'.join(path)} = {value!r}, an option this version of "
                          "the pipeline no longer has (BUILD.md, \"What we measured\"); "
                          "continue that build with the version that made it, or start a "
                          "fresh one")
  return d


def _from_dict(cls: Any, d: Any, where: str) -> Any:
  if not isinstance(d, dict):
    raise PipelineError(f"{where}: expected an object for {cls.__name__}, got {d!r}")
  fields = {f.name: f for f in dataclasses.fields(cls)}
  unknown = sorted(set(d) - set(fields))
  if unknown:
    raise PipelineError(f"{where}: unknown field(s) {', '.join(unknown)} in {cls.__name__}; "
                        "was it written by another version of the pipeline?")
  kwargs = {}
  for name, value in d.items():
    field_type = fields[name].type
    if isinstance(field_type, type) and dataclasses.is_dataclass(field_type):
      value = _from_dict(field_type, value, f"{where}: {name}")
    elif isinstance(value, list):
      value = tuple(value)
    kwargs[name] = value
  return cls(**kwargs)


def replace(config: Any, **changes: Any) -> Any:
  """`dataclasses.replace`, re-exported so variants override one default (flax style)."""
  return dataclasses.replace(config, **changes)


def smoke_config(**overrides: Any) -> BuildConfig:
  """A seconds-sized recipe for tests: tiny MobileNetV2, random init, 48 px.

  Args:
    **overrides: top-level BuildConfig fields to override.

  Returns:
    A validated BuildConfig.
  """
  base = BuildConfig(
      data=DataConfig(data_format="synthetic", image_size=48, synthetic_classes=3,
                      synthetic_per_class=60),
      model=ModelConfig(weights="none", alpha=0.35, dropout=0.0),
      # A random backbone is a poor feature extractor: the whole network must train.
      train=TrainConfig(transfer=PhaseConfig(epochs=5, learning_rate=1e-3),
                        finetune=PhaseConfig(epochs=12, learning_rate=1e-3),
                        qat=PhaseConfig(epochs=1, learning_rate=1e-5),
                        finetune_layers=154, batch_size=16, augment=False),
      export=ExportConfig(calibration_images=32),
  )
  return dataclasses.replace(base, **overrides).validate()


def smoke_run(output_dir: str, **overrides: Any) -> RunOptions:
  """Run options for a test build in `output_dir` (assets in output_dir/android_assets)."""
  return RunOptions(output_dir=output_dir, **overrides).validate()


