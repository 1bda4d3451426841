"""Stage `metadata`: labels, display names, normalization and model info embedded in every
.tflite and read back, then the check an app would do (Task Library classifies test images)."""

import dataclasses
import os
import tempfile
from typing import Dict

import numpy as np

from pipeline import __version__
from pipeline import atomic
from pipeline import export as export_lib
from pipeline import labels as labels_lib
from pipeline import provenance
from pipeline import tflite_metadata
from pipeline.config import BuildConfig
from pipeline.data import DataBundle
from pipeline.errors import PipelineError
from pipeline.preprocessing import Normalization
from pipeline.stages.state import BuildState

TASK_LIBRARY_IMAGES = 8


def run(config: BuildConfig, state: BuildState) -> BuildState:
  """Writes and verifies the metadata of every variant; checks int8 with Task Library.

  Raises:
    PipelineError: metadata that does not read back, or Task Library disagreeing with the
      interpreter.
  """
  labels, norm = state.labels, config.model.normalization
  display = labels_lib.display_names(labels, config.metadata.display_names)
  info = metadata_info(config, labels)
  blobs = {}
  for variant, blob in state.blobs.items():
    blobs[variant] = tflite_metadata.write(blob, labels, display, norm, info)
    tflite_metadata.verify(blobs[variant], labels, display, norm, info,
                           where=export_lib.file_name(variant))
    atomic.write_bytes(state.path(export_lib.file_name(variant)), blobs[variant])
  task = task_library_check(blobs["int8"], state.bundle, norm, state.options.output_dir)
  state.log(f"metadata: written and read back on {len(blobs)} models; {task['message']}")
  return dataclasses.replace(state, blobs=blobs, metadata=info, display_names=tuple(display),
                             task_library=task)


def metadata_info(config: BuildConfig, labels) -> Dict[str, str]:
  """Name, description, version, author and license: flags over metadata/defaults.json."""
  defaults = labels_lib.metadata_defaults(config.data.data_format)
  commit = provenance.git_commit()
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


def task_library_check(model_bytes: bytes, bundle: DataBundle, normalization: Normalization,
                       out: str) -> dict:
  """Classifies a few test images with Task Library and with LiteRT; top-1 must agree.

  Images are written at the model's input size, so Task Library's own resize is a no-op
  and both paths see the same pixels.

  Raises:
    PipelineError: Task Library fails, or its top-1 differs from the interpreter's.
  """
  from PIL import Image  # pylint: disable=g-import-not-at-top
  from pipeline import task_library_check  # pylint: disable=g-import-not-at-top
  from pipeline.runner import LiteRunner  # pylint: disable=g-import-not-at-top
  test = bundle.splits["test"]
  idx = np.linspace(0, len(test) - 1, min(TASK_LIBRARY_IMAGES, len(test))).astype(int)
  pixels = test.pixels(idx)
  with tempfile.TemporaryDirectory(dir=out) as tmp:
    model_path = os.path.join(tmp, "model.tflite")
    with open(model_path, "wb") as f:
      f.write(model_bytes)
    paths = []
    for i, img in enumerate(pixels):
      paths.append(os.path.join(tmp, f"{i}.png"))
      Image.fromarray(img).save(paths[-1])
    task = task_library_check.classify(model_path, paths)
  probs = LiteRunner(model_bytes, normalization).predict(pixels)
  # Quantized scores can tie; Task Library's pick is correct if it holds the max score.
  agree = [float(probs[i, t["index"]]) >= float(probs[i].max()) - 1e-6 for i, t in
           enumerate(task)]
  result = {"images": len(task), "agree": int(sum(agree)),
            "message": f"Task Library ImageClassifier top-1 equals the interpreter's on "
                       f"{sum(agree)}/{len(task)} test images",
            "labels_seen": sorted({t["label"] for t in task})}
  if not all(agree):
    bad = agree.index(False)
    raise PipelineError(f"Task Library's top-1 ({task[bad]['label']}) differs from the "
                        f"interpreter's ({bundle.labels[int(probs[bad].argmax())]}) on test image "
                        f"{test.keys[idx[bad]]}: the model's metadata or input encoding is wrong")
  return result
