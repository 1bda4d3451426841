"""Stage `metadata`: labels, display names, normalization and model info embedded in every
.tflite and read back, then the check an app would do: TFLite Task Library and MediaPipe Tasks
classify the test images and must agree with the LiteRT interpreter."""

import dataclasses
from typing import Dict, Optional

from pipeline import __version__
from pipeline import atomic
from pipeline import evaluate as evaluate_lib
from pipeline import labels as labels_lib
from pipeline import provenance
from pipeline import tflite_metadata
from pipeline.apps import check as app_check
from pipeline.config import BuildConfig, model_file_name
from pipeline.stages.state import BuildState

# The variants an app may load (shipped.SHIPPED_FILES): each is checked in the app runtimes.
SHIPPABLE = ("int8", "int8_tta8", "float16")


def run(config: BuildConfig, state: BuildState) -> BuildState:
  """Writes and verifies the metadata of every variant; checks the shippable ones in the app
  runtimes while the interpreter computes the probabilities the evaluate stage scores.

  Raises:
    PipelineError: metadata that does not read back, or an app runtime disagreeing with the
      interpreter.
  """
  labels, norm = state.labels, config.model.normalization
  display = labels_lib.display_names(labels, config.metadata.display_names)
  info = metadata_info(config, labels, state.provenance.get("git_commit"))
  blobs = {}
  for variant, blob in state.blobs.items():
    blobs[variant] = tflite_metadata.write(blob, labels, display, norm, info)
    tflite_metadata.verify(blobs[variant], labels, display, norm, info,
                           where=model_file_name(variant))
    atomic.write_bytes(state.path(model_file_name(variant)), blobs[variant])
  state.log(f"metadata: written and read back on {len(blobs)} models")
  test = state.bundle.splits["test"]
  pixels, shippable = test.pixels(), {v: blobs[v] for v in SHIPPABLE if v in blobs}
  # While the runtimes run, the interpreter computes every probability the evaluate stage
  # scores: the runtimes must match the shipped files' ones.
  apps, probs = app_check.check_models(
      shippable, pixels, test.keys, labels, state.options.output_dir,
      predict=lambda: evaluate_lib.predict_variants(
          blobs, pixels, labels, norm, log=lambda message: state.log(f"metadata: {message}")))
  for variant, results in apps.items():
    for result in results.values():
      state.log(f"metadata: {model_file_name(variant)}: {result['message']}")
  return dataclasses.replace(state, blobs=blobs, metadata=info, display_names=tuple(display),
                             app_runtimes=apps, test_probs=probs)


def metadata_info(config: BuildConfig, labels, commit: Optional[str]) -> Dict[str, str]:
  """Name, description, version, author and license: flags over pipeline/metadata/defaults.json.

  `commit` is the build's source commit (report.json's provenance), or None outside git."""
  defaults = labels_lib.metadata_defaults(config.data.data_format)
  values = {"dataset": config.data.data_format, "alpha": config.model.alpha,
            "size": config.data.image_size, "classes": ", ".join(labels),
            "pipeline_version": __version__, "build_date": provenance.today(),
            "git_commit": commit[:12] + ("+dirty" if commit.endswith("+dirty") else "")
                          if commit else "unknown"}
  m = config.metadata
  info = {
      "name": m.name or defaults["name"].format(**values),
      "description": m.description or defaults["description"].format(**values),
      "version": m.version or defaults["version"].format(**values),
      "author": m.author or defaults["author"],
      "license": m.license or defaults["license"],
  }
  if "not a diagnostic device" not in info["description"].lower():
    info["description"] = info["description"].rstrip() + " Not a diagnostic device."
  return info
