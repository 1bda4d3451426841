"""Stage `assets`: latency of the shipped model, then the drop-in app folder (model.tflite,
labels.txt, referral.json, MODEL_CARD.md, README.md), replaced atomically."""

import dataclasses
import hashlib

from pipeline import assets as assets_lib
from pipeline import atomic
from pipeline import latency
from pipeline import referral as referral_lib
from pipeline.config import BuildConfig, model_file_name
from pipeline.stages import state as state_lib
from pipeline.stages.state import BuildState


def run(config: BuildConfig, state: BuildState) -> BuildState:
  """Times int8 and float32 on this machine, writes the model card and the app folder."""
  lat = latency.measure([state.path(model_file_name(v)) for v in ("int8", "float32")],
                        threads=[1], runs=30, warmup_runs=5)
  state = dataclasses.replace(state, latency=lat)
  referral_file = None
  if state.referral:
    referral_file = referral_lib.shipped_file(
        state.referral, hashlib.sha256(state.blobs["int8"]).hexdigest(), assets_lib.DISCLAIMER)
    atomic.write_json(state.path(referral_lib.FILE_NAME), referral_file)
  card = assets_lib.model_card(state.metadata, state_lib.report(config, state, {}),
                               state.display_names, lat)
  assets_dir = state.options.assets_dir
  assets_lib.write_assets(assets_dir, state.blobs["int8"], state.labels, card,
                          assets_lib.readme(state.tensors["int8"], state.labels, referral_file),
                          referral_file)
  atomic.write_text(state.path("MODEL_CARD.md"), card)
  state.log(f"assets: {assets_dir} updated (model.tflite, labels.txt, MODEL_CARD.md, "
            "README.md)")
  return state
