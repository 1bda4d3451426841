"""Stage `export`: every TFLite variant, checked and written (always rerun on --resume: it
takes seconds and keeps the files consistent)."""

import dataclasses
import time

from pipeline import atomic
from pipeline import export as export_lib
from pipeline.config import BuildConfig, model_file_name
from pipeline.stages.state import BuildState


def run(config: BuildConfig, state: BuildState) -> BuildState:
  """Converts the QAT model (int8) and the float model (int8_ptq, float16, float32).

  Raises:
    PipelineError: the shipped int8 model does not take raw uint8 pixels, or a variant has
      the wrong I/O or weight types.
  """
  norm = config.model.normalization
  blobs, tensors = {}, {}
  for i, variant in enumerate(config.export.variants, start=1):
    t0 = time.time()
    blob = blobs[variant] = export_lib.convert_variant(
        variant, state.float_model, state.qat_model, state.calibration, norm,
        config.export.io_dtype)
    state.log(f"export: {variant} converted in {time.time() - t0:.0f}s ({i}/"
              f"{len(config.export.variants)})")
    if variant.startswith("int8"):
      # The shipped model must take raw pixels; PTQ's range comes from its calibration set.
      tensors[variant] = export_lib.check_int8(blob, config.export.io_dtype, norm,
                                               require_raw_pixels=variant == "int8")
    else:
      tensors[variant] = export_lib.tensor_summary(blob)
    atomic.write_bytes(state.path(model_file_name(variant)), blob)
  state.log(f"export: {', '.join(f'{v} {len(b) / 1e6:.2f} MB' for v, b in blobs.items())} "
            f"(calibrated on {len(state.calibration)} training images)")
  return dataclasses.replace(state, blobs=blobs, tensors=tensors)
