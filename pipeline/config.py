"""Typed build configuration: frozen dataclasses, validated once, saved as config.json."""

import dataclasses
import json
import os
from typing import Any, Optional, Tuple

from pipeline.errors import PipelineError
from pipeline.metrics import MALIGNANT

DATA_FORMATS = ("ham10000", "folders", "hmnist_csv", "synthetic")
STAGES = ("data", "transfer", "finetune", "qat", "export", "metadata", "evaluate", "gate",
          "assets")
STRATEGIES = ("default", "mirrored", "multi_worker")
IO_DTYPES = ("uint8", "int8", "float32")
VARIANTS = ("int8", "int8_ptq", "float16", "float32")
CLASS_WEIGHTS = ("balanced", "none", "logit_adjusted")
TRANSFER_MODES = ("cached_features", "end_to_end")
QAT_TARGETS = ("float_model", "labels")


def check_choice(name: str, value: str, choices: Tuple[str, ...]) -> str:
  """Returns `value` if it is one of `choices`.

  Raises:
    PipelineError: naming the valid values otherwise.
  """
  if value not in choices:
    raise PipelineError(f"{name}={value!r} is not valid; use one of: {', '.join(choices)}")
  return value


@dataclasses.dataclass(frozen=True)
class DataConfig:
  """Where the images come from and how they are split and fed."""
  data_format: str = "synthetic"
  data_dir: str = ""
  metadata_csv: str = ""
  image_size: int = 224
  val_fraction: float = 0.1
  test_fraction: float = 0.2
  split_file: str = ""
  strict: bool = False
  hmnist_labels: str = ""  # "0:akiec,1:bcc,..." overrides the documented default table.
  class_weight: str = "balanced"
  oversample: bool = False
  augment: bool = True
  cache_max_gb: float = 8.0  # Decoded images are kept in memory up to this size.
  synthetic_classes: int = 4
  synthetic_per_class: int = 40
  decode_workers: int = 0  # 0: one per CPU core.

  @property
  def class_balance(self) -> str:
    """How training balances classes: "oversample" (which wins over weights), else
    --class_weight ("balanced", "none" or "logit_adjusted")."""
    return "oversample" if self.oversample else self.class_weight

  def validate(self) -> None:
    check_choice("data_format", self.data_format, DATA_FORMATS)
    check_choice("class_weight", self.class_weight, CLASS_WEIGHTS)
    if self.data_format in ("ham10000", "folders") and not self.data_dir:
      raise PipelineError(f"--data_dir is required for --data_format={self.data_format}")
    if self.data_format in ("ham10000", "hmnist_csv") and not self.metadata_csv:
      raise PipelineError(f"--metadata_csv is required for --data_format={self.data_format}")
    if not 32 <= self.image_size <= 1024:
      raise PipelineError(f"--image_size={self.image_size} is out of range; use 32..1024")
    for name in ("val_fraction", "test_fraction"):
      value = getattr(self, name)
      if not 0.0 < value < 0.5:
        raise PipelineError(f"--{name}={value} is out of range; use a value in (0, 0.5)")
    if self.synthetic_classes < 2 or self.synthetic_per_class < 10:
      raise PipelineError("--synthetic_classes must be >= 2 and --synthetic_per_class >= 10")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """The backbone and the classification head."""
  weights: str = "imagenet"  # imagenet | none | path to a no-top .h5
  alpha: float = 1.0
  dropout: float = 0.2

  def validate(self) -> None:
    if self.weights not in ("imagenet", "none") and not os.path.isfile(self.weights):
      raise PipelineError(f"--weights={self.weights!r}: no such file; use imagenet, none, or "
                          "the path to a MobileNetV2 no-top .h5")
    if self.alpha not in (0.35, 0.5, 0.75, 1.0, 1.3, 1.4):
      raise PipelineError(f"--alpha={self.alpha} is not a MobileNetV2 width; use one of "
                          "0.35, 0.5, 0.75, 1.0, 1.3, 1.4")
    if not 0.0 <= self.dropout < 1.0:
      raise PipelineError(f"--dropout={self.dropout} is out of range; use [0, 1)")


@dataclasses.dataclass(frozen=True)
class PhaseConfig:
  """One training phase: how long, how fast."""
  epochs: int
  learning_rate: float
  warmup_epochs: float = 0.0
  label_smoothing: float = 0.0

  def validate(self, name: str) -> None:
    if self.epochs < 0:
      raise PipelineError(f"--{name}_epochs={self.epochs} must be >= 0")
    if self.learning_rate <= 0:
      raise PipelineError(f"--{name}_lr={self.learning_rate} must be > 0")
    if not 0.0 <= self.label_smoothing < 1.0:
      raise PipelineError(f"--label_smoothing={self.label_smoothing} must be in [0, 1)")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """The three training phases and what they share."""
  transfer: PhaseConfig = PhaseConfig(epochs=30, learning_rate=1e-3)
  finetune: PhaseConfig = PhaseConfig(epochs=15, learning_rate=3e-4, warmup_epochs=1.0,
                                      label_smoothing=0.1)
  qat: PhaseConfig = PhaseConfig(epochs=1, learning_rate=1e-5)
  # QAT target: "float_model" = the fine-tuned float model's probabilities on the same
  # augmented batch (self-distillation: the int8 model learns to agree with the float one);
  # "labels" = the training labels, as in fine-tuning.
  qat_target: str = "float_model"
  transfer_mode: str = "cached_features"
  finetune_layers: int = 100  # From block_6_expand up: a block boundary of MobileNetV2.
  batch_size: int = 32
  strategy: str = "default"

  def validate(self) -> None:
    self.transfer.validate("transfer")
    self.finetune.validate("finetune")
    self.qat.validate("qat")
    check_choice("transfer_mode", self.transfer_mode, TRANSFER_MODES)
    check_choice("qat_target", self.qat_target, QAT_TARGETS)
    check_choice("strategy", self.strategy, STRATEGIES)
    if self.finetune_layers < 0:
      raise PipelineError(f"--finetune_layers={self.finetune_layers} must be >= 0")
    if self.batch_size < 1:
      raise PipelineError(f"--batch_size={self.batch_size} must be >= 1")


@dataclasses.dataclass(frozen=True)
class ExportConfig:
  """TFLite variants and their I/O types."""
  io_dtype: str = "uint8"
  variants: Tuple[str, ...] = VARIANTS
  calibration_images: int = 300

  def validate(self) -> None:
    check_choice("io_dtype", self.io_dtype, IO_DTYPES)
    for v in self.variants:
      check_choice("variants", v, VARIANTS)
    if "int8" not in self.variants or "float32" not in self.variants:
      raise PipelineError("--variants must include int8 (the shipped model) and float32 "
                          "(the parity reference)")
    if self.calibration_images < 1:
      raise PipelineError("--calibration_images must be >= 1")


@dataclasses.dataclass(frozen=True)
class MetadataConfig:
  """What the .tflite says about itself. Empty fields fall back to metadata/defaults.json."""
  name: str = ""
  description: str = ""
  version: str = ""
  author: str = ""
  license: str = ""
  display_names: str = ""  # JSON {label: display name}; empty: metadata/<dataset>.json if any.

  def validate(self) -> None:
    if self.display_names and not os.path.isfile(self.display_names):
      raise PipelineError(f"--display_names={self.display_names!r}: no such file")


@dataclasses.dataclass(frozen=True)
class GateConfig:
  """The int8-vs-float32 parity gate that stops a broken model from shipping.

  It compares the two models image by image on the test split (pipeline/parity.py) and fails
  for evidence, not noise; BUILD.md ("Parity gate") justifies each default with figures.
  """
  # Agreement below this only a broken model reaches: every good int8 (QAT or PTQ) and
  # float16 model on HAM10000 agreed with float32 on 94.6-98.2% of the test images.
  min_top1_agreement: float = 0.90
  # int8 fails when even the low end of the 95% interval of its balanced-accuracy drop is
  # above this (the data then show a loss larger than we accept).
  max_balanced_accuracy_drop: float = 0.01
  # One-sided exact McNemar test: int8 wrong alone significantly more often than float32.
  mcnemar_alpha: float = 0.01
  # A flip of a float32 prediction at least this sure (top-1 minus top-2 probability) into a
  # wrong answer is a defect, not rounding: good models' flips stayed at or under 0.33 (int8
  # PTQ, run ham1); int8 QAT's at or under 0.17.
  max_flip_margin: float = 0.4
  bootstrap_rounds: int = 2000
  enabled: bool = True

  def validate(self) -> None:
    if not 0.0 <= self.min_top1_agreement <= 1.0:
      raise PipelineError("--gate_min_agreement must be in [0, 1]")
    if not 0.0 <= self.max_balanced_accuracy_drop <= 1.0:
      raise PipelineError("--gate_max_bacc_drop must be in [0, 1]")
    if not 0.0 < self.mcnemar_alpha < 1.0:
      raise PipelineError("--gate_mcnemar_alpha must be in (0, 1)")
    if not 0.0 < self.max_flip_margin <= 1.0:
      raise PipelineError("--gate_max_flip_margin must be in (0, 1]")
    if self.bootstrap_rounds < 100:
      raise PipelineError("--gate_bootstrap_rounds must be >= 100")


# The serious classes of each dataset whose labels are known in advance (hmnist_csv is
# HAM10000 too). A referral threshold is fit on their summed probability.
DEFAULT_MALIGNANT_CLASSES = {"ham10000": MALIGNANT, "hmnist_csv": MALIGNANT}


@dataclasses.dataclass(frozen=True)
class ReferralConfig:
  """A triage operating point: refer when P(serious classes) reaches a threshold that is fit
  on the validation split to catch `sensitivity` of the serious cases."""
  # None: the data format's default (DEFAULT_MALIGNANT_CLASSES; none for other formats).
  # An empty tuple turns the referral threshold off.
  malignant_classes: Optional[Tuple[str, ...]] = None
  sensitivity: float = 0.90

  def classes(self, data_format: str, labels) -> Tuple[str, ...]:
    """The serious classes in force for a dataset with `labels`.

    The format's defaults are kept where the dataset has them (a HAM10000 subset without
    bcc refers on mel + akiec), and dropped altogether when nothing would be left to not
    refer. Classes the user named must all be labels (`check_labels`).
    """
    if self.malignant_classes is not None:
      return tuple(self.malignant_classes)
    present = tuple(c for c in DEFAULT_MALIGNANT_CLASSES.get(data_format, ()) if c in labels)
    return present if len(present) < len(labels) else ()

  def check_labels(self, data_format: str, labels) -> None:
    """Raises PipelineError if a serious class the user named is not one of the labels."""
    classes = self.classes(data_format, labels)
    missing = [c for c in classes if c not in labels]
    if missing:
      raise PipelineError(f"--malignant_classes: {', '.join(missing)} not among the dataset's "
                          f"labels ({', '.join(labels)}); name labels from labels.txt, or "
                          "give --malignant_classes= to build without a referral threshold")
    if classes and len(classes) >= len(labels):
      raise PipelineError("--malignant_classes names every label: a referral threshold needs "
                          "at least one class that is not referred")

  def validate(self) -> None:
    if not 0.0 < self.sensitivity < 1.0:
      raise PipelineError(f"--referral_sensitivity={self.sensitivity} must be in (0, 1)")


@dataclasses.dataclass(frozen=True)
class BuildConfig:
  """Everything one build needs; the only input of `pipeline.build.run`."""
  output_dir: str
  assets_dir: str = "android_assets"
  seed: int = 42
  # TensorFlow op determinism: the same seed then gives bit-identical weights (without it the
  # split and labels repeat but CPU training does not).
  deterministic: bool = False
  stop_after: str = "assets"
  resume: bool = False
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
    if not self.output_dir:
      raise PipelineError("--output_dir is required")
    check_choice("stop_after", self.stop_after, STAGES)
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
  def from_dict(cls, d: dict) -> "BuildConfig":
    return _from_dict(cls, d)

  @classmethod
  def load(cls, path: str) -> "BuildConfig":
    with open(path, encoding="utf-8") as f:
      return cls.from_dict(json.load(f))


def _from_dict(cls: Any, d: Any) -> Any:
  if not dataclasses.is_dataclass(cls):
    return d
  kwargs = {}
  for field in dataclasses.fields(cls):
    if field.name not in d:
      continue
    value = d[field.name]
    field_type = field.type if isinstance(field.type, type) else None
    if field_type is not None and dataclasses.is_dataclass(field_type):
      value = _from_dict(field_type, value)
    elif isinstance(value, list):
      value = tuple(value)
    kwargs[field.name] = value
  return cls(**kwargs)


def replace(config: Any, **changes: Any) -> Any:
  """`dataclasses.replace`, re-exported so variants override one default (flax style)."""
  return dataclasses.replace(config, **changes)


def stage_index(stage: str) -> int:
  return STAGES.index(stage)


def smoke_config(output_dir: str, data_dir: Optional[str] = None, **overrides: Any) -> BuildConfig:
  """A seconds-sized configuration for tests: tiny MobileNetV2, random init, 48 px.

  Args:
    output_dir: where the build writes.
    data_dir: unused unless the data format needs it.
    **overrides: top-level BuildConfig fields to override.

  Returns:
    A validated BuildConfig.
  """
  base = BuildConfig(
      output_dir=output_dir,
      assets_dir=os.path.join(output_dir, "android_assets"),
      data=DataConfig(data_format="synthetic", data_dir=data_dir or "", image_size=48,
                      synthetic_classes=3, synthetic_per_class=60, augment=False),
      model=ModelConfig(weights="none", alpha=0.35, dropout=0.0),
      # A random backbone is a poor feature extractor: the whole network must train.
      train=TrainConfig(transfer=PhaseConfig(epochs=5, learning_rate=1e-3),
                        finetune=PhaseConfig(epochs=12, learning_rate=1e-3),
                        qat=PhaseConfig(epochs=1, learning_rate=1e-5),
                        finetune_layers=154, batch_size=16),
      export=ExportConfig(calibration_images=32),
  )
  return dataclasses.replace(base, **overrides).validate()
