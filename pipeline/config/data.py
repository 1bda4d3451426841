"""Where the images come from, how they are decoded and how they are split."""

import dataclasses

from pipeline.config.choices import DATA_FORMATS, check_choice
from pipeline.config.fields import flag
from pipeline.errors import PipelineError


@dataclasses.dataclass(frozen=True)
class DataConfig:
  """Where the images come from and how they are split and decoded."""
  data_format: str = flag(
      "synthetic", "data", "Input layout: ham10000 (metadata CSV + images in one or more "
      "folders), folders (ROOT/CLASS/*.jpg, or ROOT/train|test/CLASS), hmnist_csv (28x28 pixel "
      "CSV), synthetic (the generated demo set).", choices=DATA_FORMATS)
  data_dir: str = flag("", "data", "Image root; for ham10000 several folders, comma-separated "
                       "(e.g. HAM10000_images_part_1,HAM10000_images_part_2).")
  metadata_csv: str = flag("", "data", "HAM10000_metadata.csv (ham10000) or "
                           "hmnist_28_28_RGB.csv (hmnist_csv).")
  image_size: int = flag(224, "data", "Model input height and width in pixels; smaller is "
                         "faster on the phone and usually less accurate.")
  val_fraction: float = 0.1
  test_fraction: float = 0.2
  # Share of each class's training lesions used, drawn with the seed (a learning curve:
  # benchmarks.crossval --build_flag=--set=data.train_fraction=0.5).
  train_fraction: float = 1.0
  split_file: str = flag("", "data", "A splits.csv to use instead of splitting anew (another "
                         "build's, to compare recipes on the same images).")
  strict: bool = flag(False, "data", "Fail on any unusable input instead of skipping it (and "
                      "listing it in data_report.json).")
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
        raise PipelineError(f"data.{name}={value} is out of range; use a value in (0, 0.5)")
    if not 0.0 < self.train_fraction <= 1.0:
      raise PipelineError(f"data.train_fraction={self.train_fraction} is out of range; use a "
                          "value in (0, 1]")
    if self.synthetic_classes < 2 or self.synthetic_per_class < 10:
      raise PipelineError("data.synthetic_classes must be >= 2 and data.synthetic_per_class "
                          ">= 10")
