"""What the build writes: TFLite variants, their I/O types, and what the .tflite says."""

import dataclasses
import os
from typing import Tuple

from pipeline import labels as labels_lib
from pipeline.config.choices import IO_DTYPES, VARIANTS, check_choice
from pipeline.config.fields import flag
from pipeline.errors import PipelineError


def model_file_name(variant: str) -> str:
  """model_int8.tflite, model_int8_ptq.tflite, model_float16.tflite, model_float32.tflite."""
  return f"model_{variant}.tflite"


@dataclasses.dataclass(frozen=True)
class ExportConfig:
  """TFLite variants and their I/O types."""
  io_dtype: str = "uint8"
  variants: Tuple[str, ...] = flag(
      VARIANTS, "export", "TFLite variants written: int8 (QAT, shipped) and float32 (the "
      "parity reference) always; int8_tta8 (8 views in one invoke), int8_ptq, float16.")
  calibration_images: int = 300

  def validate(self) -> None:
    check_choice("export.io_dtype", self.io_dtype, IO_DTYPES)
    for v in self.variants:
      check_choice("variants", v, VARIANTS)
    if "int8" not in self.variants or "float32" not in self.variants:
      raise PipelineError("--variants must include int8 (the shipped model) and float32 "
                          "(the parity reference)")
    if self.calibration_images < 1:
      raise PipelineError("export.calibration_images must be >= 1")


@dataclasses.dataclass(frozen=True)
class MetadataConfig:
  """What the .tflite says about itself. Empty fields fall back to the tool's defaults
  (pipeline/metadata/defaults.json)."""
  name: str = flag("", "export", "Model name in the metadata (default: the tool's, by data "
                   "format).", name="model_name")
  description: str = ""
  version: str = ""
  author: str = ""
  license: str = ""
  display_names: str = flag("", "export", "JSON file {label: {display_name: ...}}; default: "
                            "the tool's names of the dataset's classes, else the label.")

  def validate(self) -> None:
    if self.display_names and not os.path.isfile(self.display_names):
      raise PipelineError(f"--display_names={self.display_names!r}: no such file")
    if self.display_names:  # Read now: a bad file must not wait for the metadata stage.
      labels_lib.load_class_info(self.display_names)
