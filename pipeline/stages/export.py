"""Stage `export`: every TFLite variant, checked and written. The converted files are also
kept as they left the converter (the metadata stage rewrites the shipped ones in place), so
--resume after a failed metadata stage, or --rerun_from=metadata, reuses them instead of
converting again (about 2 minutes on a HAM10000 build)."""

import concurrent.futures
import dataclasses
import multiprocessing
import os
import time

from pipeline import atomic
from pipeline import export as export_lib
from pipeline.config import BuildConfig, model_file_name
from pipeline.stages.state import BuildState
from pipeline.stages.training import FLOAT_MODEL

KEPT_DIR = os.path.join("checkpoints", "export")  # The converter's files, before metadata.
MANIFEST = os.path.join(KEPT_DIR, "variants.json")  # Written last: the stage is complete.


def run(config: BuildConfig, state: BuildState) -> BuildState:
  """Converts the QAT model (int8, int8_tta8) and, in a second process on a machine with two
  cores or more, the float model (int8_ptq, float16, float32) from its saved file.

  Raises:
    PipelineError: the shipped int8 model does not take raw uint8 pixels, or a variant has
      the wrong I/O or weight types.
  """
  norm, io_dtype = config.model.normalization, config.export.io_dtype
  variants = config.export.variants
  if os.path.exists(state.path(MANIFEST)):
    os.remove(state.path(MANIFEST))  # An earlier export's files are not this one's.
  os.makedirs(state.path(KEPT_DIR), exist_ok=True)
  aside = [v for v in variants if v in export_lib.FROM_FLOAT_MODEL] if (
      (os.cpu_count() or 1) >= 2 and os.path.exists(state.path(FLOAT_MODEL))) else []
  blobs, pending = {}, None
  with concurrent.futures.ProcessPoolExecutor(
      1, mp_context=multiprocessing.get_context("spawn")) as pool:
    if aside:
      pending = pool.submit(export_lib.convert_saved_float_variants, state.path(FLOAT_MODEL),
                            aside, state.calibration, norm, io_dtype)
      state.log(f"export: {', '.join(aside)} converting in a second process")
    for variant in (v for v in variants if v not in aside):
      t0 = time.time()
      blobs[variant] = export_lib.convert_variant(variant, state.float_model, state.qat_model,
                                                  state.calibration, norm, io_dtype)
      state.log(f"export: {variant} converted in {time.time() - t0:.0f}s")
    for variant, (blob, seconds) in (pending.result().items() if pending else ()):
      blobs[variant] = blob
      state.log(f"export: {variant} converted in {seconds:.0f}s (second process)")
  tensors = {}
  for variant in variants:
    tensors[variant] = _check(config, variant, blobs[variant])
    for path in (os.path.join(KEPT_DIR, model_file_name(variant)), model_file_name(variant)):
      atomic.write_bytes(state.path(path), blobs[variant])
  blobs = {v: blobs[v] for v in variants}
  atomic.write_json(state.path(MANIFEST), {v: model_file_name(v) for v in blobs})
  state.log(f"export: {', '.join(f'{v} {len(b) / 1e6:.2f} MB' for v, b in blobs.items())} "
            f"(calibrated on {len(state.calibration)} training images)")
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
