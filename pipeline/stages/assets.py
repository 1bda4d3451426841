"""Stage `assets`: latency of the shipped model, then the drop-in app folder (model.tflite,
labels.txt, referral.json, MODEL_CARD.md, README.md), replaced atomically."""

import dataclasses

from pipeline import assets as assets_lib
from pipeline import atomic
from pipeline import labels as labels_lib
from pipeline import latency
from pipeline import model_card
from pipeline import provenance
from pipeline import referral as referral_lib
from pipeline.config import BuildConfig, model_file_name
from pipeline.evaluate import TTA_VARIANT
from pipeline.stages import state as state_lib
from pipeline.stages.state import BuildState

MODEL_CARD_JSON = "model_card.json"  # Model Card Toolkit's schema, for registries and QA.


def run(config: BuildConfig, state: BuildState) -> BuildState:
  """Times the shipped models and float32 on this machine, writes the model card and the app
  folder (with model_tta8.tflite when the build made it and it passed its parity check)."""
  tta = TTA_VARIANT if (state.gate or {}).get("other_variants", {}).get(TTA_VARIANT) else None
  ios = "float16" if "float16" in state.blobs else None  # For iOS's Core ML delegate.
  timed = ["int8"] + ([tta] if tta else []) + ([ios] if ios else []) + ["float32"]
  lat = latency.measure([state.path(model_file_name(v)) for v in timed],
                        threads=[1], runs=30, warmup_runs=5)
  state = dataclasses.replace(state, latency=lat)
  referral_file = None
  if state.referral:
    referral_file = referral_lib.shipped_file(
        state.referral, provenance.sha256(state.blobs["int8"]), assets_lib.DISCLAIMER)
    atomic.write_json(state.path(referral_lib.FILE_NAME), referral_file)
  report = state_lib.report(config, state, {})
  tta_info = assets_lib.tta_summary(report, lat) if tta else None
  card = assets_lib.model_card(state.metadata, report, state.display_names, lat, tta_info)
  assets_dir = state.options.assets_dir
  extra = {assets_lib.TTA_MODEL_FILE: state.blobs[tta]} if tta else {}
  if ios:
    extra[assets_lib.FLOAT16_MODEL_FILE] = state.blobs[ios]
  assets_lib.write_assets(
      assets_dir, state.blobs["int8"], state.labels, card,
      assets_lib.readme(state.tensors["int8"], state.labels, referral_file, tta_info,
                        choices=assets_lib.model_choices(report, lat, [tta, ios]),
                        normalization=config.model.normalization),
      referral_file, extra)
  atomic.write_text(state.path("MODEL_CARD.md"), card)
  atomic.write_json(state.path(MODEL_CARD_JSON), model_card.toolkit_json(
      state.metadata, report, labels_lib.metadata_defaults(config.data.data_format),
      state.display_names))
  if TTA_VARIANT in state.blobs and not tta:
    state.log(f"assets: {assets_lib.TTA_MODEL_FILE} not shipped: {TTA_VARIANT} failed its "
              "parity check against float32 over the same views (report.md)")
  state.log(f"assets: {assets_dir} updated (model.tflite"
            + (f", {assets_lib.TTA_MODEL_FILE}" if tta else "")
            + (f", {assets_lib.FLOAT16_MODEL_FILE}" if ios else "")
            + ", labels.txt, MODEL_CARD.md, README.md)")
  return state
