r"""Where a build's int8 error comes from: range calibration, QAT training, or conversion.

On the test split, each step against the one it should match, per image (the largest change
of any class score, as benchmarks/parity_tail.py): the fake-quant QAT model right after its
ranges are calibrated (before any QAT step) and as QAT left it, against the float model; the
int8 file against that QAT model and against the float model.

  python -m benchmarks.qat_error --build_dir=build/ham10000 --output_json=qat_error.json
"""

import os
from typing import List

from absl import app
from absl import flags

from benchmarks import common
from benchmarks.parity_tail import THRESHOLDS, tail_cells, tail_figures

FLAGS = flags.FLAGS
STEPS = (("calibrated QAT model, before training", "float model"),
         ("QAT model as trained", "float model"),
         ("int8 file", "QAT model as trained"),
         ("int8 file", "float model"))


def define_flags() -> None:
  """Defined when run, not on import (see benchmarks/compare.py)."""
  flags.DEFINE_multi_string("build_dir", [], "A finished build (repeatable).")
  flags.DEFINE_string("output_json", "qat_error.json", "JSON report path.")
  flags.DEFINE_string("output_md", "", "Markdown report path (default: beside the JSON).")


def measure(build_dirs: List[str]) -> dict:
  """Raises PipelineError: no builds, or a build without its float model, QAT weights or
  int8 file."""
  from pipeline import config as config_lib  # pylint: disable=g-import-not-at-top
  from pipeline.errors import PipelineError  # pylint: disable=g-import-not-at-top
  from pipeline.runner import LiteRunner, keras_predict  # pylint: disable=g-import-not-at-top
  from pipeline.stages import training  # pylint: disable=g-import-not-at-top
  from pipeline.tf_compat import keras  # pylint: disable=g-import-not-at-top
  from pipeline.train import qat  # pylint: disable=g-import-not-at-top
  if not build_dirs:
    raise PipelineError("give at least one --build_dir=BUILD")
  builds = []
  for build_dir in build_dirs:
    float_path, _, int8_path = config_lib.build_files(
        build_dir, (training.FLOAT_MODEL, training.QAT_WEIGHTS + ".index",
                    config_lib.model_file_name("int8")), "export")
    config, test = common.build_split(build_dir)
    _, train = common.build_split(build_dir, "train")
    norm, layers = config.model.normalization, config.train.finetune_layers
    pixels = test.pixels()
    float_model = keras.models.load_model(float_path)
    probs = {"float model": keras_predict(float_model, pixels, norm)}
    _, batches = training.calibration(config, train)
    calibrated = qat.quantize_model(float_model, layers, norm, calibration_batches=batches)
    probs[STEPS[0][0]] = keras_predict(calibrated, pixels, norm)
    trained = qat.quantize_model(float_model, layers, norm)
    trained.load_weights(os.path.join(build_dir, training.QAT_WEIGHTS)).expect_partial()
    qat.pin_input_range(trained, norm)
    probs[STEPS[1][0]] = keras_predict(trained, pixels, norm)
    with open(int8_path, "rb") as f:
      probs["int8 file"] = LiteRunner(f.read(), norm).predict(pixels)
    builds.append({"build_dir": build_dir, "steps": [
        {"model": a, "against": b, **tail_figures(probs[a], probs[b], test.labels)}
        for a, b in STEPS]})
    common.progress(f"{build_dir}: done")
  return {"builds": builds}


def markdown(payload: dict) -> List[str]:
  over = " | ".join(f"> {t}" for t in THRESHOLDS)
  lines = ["Per test image, the largest change of any class score against the reference.", "",
           f"| build | model | against | mean | p99 | max | {over} | top-1 agreement |",
           "|---|---|---|---:|---:|---:|" + "---:|" * len(THRESHOLDS) + "---:|"]
  for b in payload["builds"]:
    for r in b["steps"]:
      lines.append(f"| {b['build_dir']} | {r['model']} | {r['against']} | {tail_cells(r)} | "
                   f"{r['top1_agreement']:.4f} |")
  return lines


def main(argv: List[str]) -> None:
  common.main("benchmarks.qat_error", argv, lambda: measure(FLAGS.build_dir), markdown,
              FLAGS.output_json, FLAGS.output_md)


if __name__ == "__main__":
  define_flags()
  app.run(main)
