"""Stage `export`: every TFLite variant, checked and written. The converted files are also
kept as they left the converter (the metadata stage rewrites the shipped ones in place), so
--resume after a failed metadata stage, or --rerun_from=metadata, reuses them instead of
converting again."""

import dataclasses
import os
import time

from pipeline import atomic
from pipeline import export as export_lib
from pipeline.config import BuildConfig, model_file_name
from pipeline.stages.state import BuildState

KEPT_DIR = os.path.join("checkpoints", "export")  # The converter's files, before metadata.
MANIFEST = os.path.join(KEPT_DIR, "variants.json")  # Written last: the stage is complete.


def run(config: BuildConfig, state: BuildState) -> BuildState:
  """Converts the QAT model (int8, int8_tta8) and the float model (int8_ptq, float16,
  float32).

  Raises:
    PipelineError: the shipped int8 model does not take raw uint8 pixels, or a variant has
      the wrong I/O or weight types.
  """
  norm, io_dtype = config.model.normalization, config.export.io_dtype
  variants = config.export.variants
  if os.path.exists(state.path(MANIFEST)):
    os.remove(state.path(MANIFEST))  # An earlier export's files are not this one's.
  os.makedirs(state.path(KEPT_DIR), exist_ok=True)
  blobs = {}
  for variant in variants:
    t0 = time.time()
    blobs[variant] = export_lib.convert_variant(variant, state.float_model, state.qat_model,
                                                state.calibration, norm, io_dtype)
    state.log(f"export: {variant} converted in {time.time() - t0:.0f}s")
  tensors = {}
  for variant in variants:
    tensors[variant] = _check(config, variant, blobs[variant])
    for path in (os.path.join(KEPT_DIR, model_file_name(variant)), model_file_name(variant)):
      atomic.write_bytes(state.path(path), blobs[variant])
  atomic.write_json(state.path(MANIFEST), {v: model_file_name(v) for v in blobs})
  state.log(f"export: {', '.join(f'{v} {len(b) / 1e6:.2f} MB' for v, b in blobs.items())} "
            f"(int8_ptq calibrated on {len(state.calibration)} training images; the QAT "
            "variants carry their own ranges)")
  return dataclasses.replace(state, blobs=blobs, tensors=tensors)


def restore(config: BuildConfig, state: BuildState) -> BuildState:
  """The finished stage's converted files (--resume, --rerun_from after export), checked again
  as `run` checks them."""
  files = atomic.read_json(state.path(MANIFEST), "the export stage's list of its files")
  blobs = {}
  for variant in config.export.variants:
    with open(state.path(os.path.join(KEPT_DIR, files[variant])), "rb") as f:
      blobs[variant] = f.read()
  tensors = {v: _check(config, v, b) for v, b in blobs.items()}
  return dataclasses.replace(state, blobs=blobs, tensors=tensors)


def _check(config: BuildConfig, variant: str, blob: bytes) -> dict:
  """The variant's tensor summary, after the checks its kind needs."""
  if variant.startswith("int8"):
    # The shipped model must take raw pixels; PTQ's range comes from its calibration set.
    return export_lib.check_int8(blob, config.export.io_dtype, config.model.normalization,
                                 require_raw_pixels=variant == "int8")
  return export_lib.tensor_summary(blob)
