"""Where the images come from, how they are decoded and how they are split."""

import dataclasses

from pipeline.config.choices import DATA_FORMATS, check_choice
from pipeline.errors import PipelineError


@dataclasses.dataclass(frozen=True)
class DataConfig:
  """Where the images come from and how they are split and decoded."""
  data_format: str = "synthetic"
  data_dir: str = ""
  metadata_csv: str = ""
  image_size: int = 224
  val_fraction: float = 0.1
  test_fraction: float = 0.2
  train_fraction: float = 1.0  # Share of each class's training lesions used (learning curves).
  split_file: str = ""
  strict: bool = False
  hmnist_labels: str = ""  # "0:akiec,1:bcc,..." overrides the documented default table.
  cache_max_gb: float = 8.0  # Decoded images are kept in memory up to this size.
  synthetic_classes: int = 4
  synthetic_per_class: int = 40

  def validate(self) -> None:
    check_choice("data_format", self.data_format, DATA_FORMATS)
    reads = {"ham10000": ("data_dir", "metadata_csv"), "folders": ("data_dir",),
             "hmnist_csv": ("metadata_csv", "hmnist_labels"), "synthetic": ()}[self.data_format]
    ignored = [f"--{n}" for n in ("data_dir", "metadata_csv", "hmnist_labels")
               if getattr(self, n) and n not in reads]
    if ignored:  # The classic: real data flags with the default (synthetic) format.
      raise PipelineError(f"{', '.join(ignored)} given, but --data_format={self.data_format} "
                          "does not read it; set --data_format (ham10000, folders or "
                          "hmnist_csv) or drop the flag")
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
    if not 0.0 < self.train_fraction <= 1.0:
      raise PipelineError(f"--train_fraction={self.train_fraction} is out of range; use a "
                          "value in (0, 1]")
    if self.synthetic_classes < 2 or self.synthetic_per_class < 10:
      raise PipelineError("--synthetic_classes must be >= 2 and --synthetic_per_class >= 10")
