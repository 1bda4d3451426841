"""The parity gate on broken int8 models built from the smoke build: each must fail it for the
right reason, and the build's own int8 and float16 must pass it."""

import os

import pytest

from pipeline import data as data_lib
from pipeline import evaluate as evaluate_lib
from pipeline import export as export_lib
from pipeline import labels as labels_lib
from pipeline import parity
from pipeline import tflite_metadata
from pipeline.train import qat as qat_lib
from pipeline.preprocessing import MOBILENET_V2, Normalization
from pipeline.tf_compat import keras


def _read(path):
  with open(path, "rb") as f:
    return f.read()


@pytest.fixture(scope="module")
def verdicts(built):
  """{variant: (GateResult, report)} for the build's models and four broken int8 models."""
  cfg, run, report = built
  out = run.output_dir
  labels = labels_lib.read_labels(os.path.join(out, "labels.txt"))
  bundle = data_lib.load(cfg.data, cfg.seed, split_file=os.path.join(out, "splits.csv"),
                         synthetic_root=os.path.join(out, "synthetic_data"))
  train, test = bundle.splits["train"], bundle.splits["test"]
  calibration = train.images[:32]
  with_metadata = lambda blob, order=labels: tflite_metadata.write(
      blob, list(order), list(order), MOBILENET_V2, report["metadata"])
  float_model = keras.models.load_model(os.path.join(out, "model_float.keras"))
  good = _read(os.path.join(out, "model_int8.tflite"))
  models = {"float32": _read(os.path.join(out, "model_float32.tflite")), "int8": good,
            "float16": _read(os.path.join(out, "model_float16.tflite")),
            # An app reading this model's labels gets them in the wrong order.
            "shuffled_labels": with_metadata(good, list(reversed(labels))),
            # The notebook bug: calibrated on 0-255 pixels, the network expects [-1, 1].
            "wrong_input_scale": with_metadata(export_lib.convert_int8(
                float_model, calibration, Normalization((0.0,) * 3, (1.0,) * 3)))}
  # One class's output dead: its logit pushed far below the others before conversion.
  dead = keras.models.clone_model(float_model)
  dead.set_weights(float_model.get_weights())
  kernel, bias = dead.layers[-1].get_weights()
  bias = bias.copy()
  bias[0] -= 100.0
  dead.layers[-1].set_weights([kernel, bias])
  models["dead_class"] = with_metadata(export_lib.convert_int8(dead, calibration, MOBILENET_V2))
  # A collapsed QAT: tfmot's uncalibrated ranges and a diverging step size.
  qat = qat_lib.quantize_model(float_model, cfg.train.finetune_layers, MOBILENET_V2)
  qat.compile(keras.optimizers.SGD(learning_rate=10.0), "sparse_categorical_crossentropy")
  qat.fit(MOBILENET_V2.apply_np(train.images), train.labels, batch_size=16, epochs=1, verbose=0)
  models["collapsed_qat"] = with_metadata(export_lib.convert_int8(qat, calibration, MOBILENET_V2))
  results, _ = evaluate_lib.evaluate_models(models, test.images, test.labels, labels,
                                            MOBILENET_V2, keys=test.keys, bootstrap_rounds=0)
  return {name: (parity.verdict(r["paired"], cfg.gate, name), r)
          for name, r in results.items() if name != "float32"}


@pytest.mark.parametrize("variant", ["int8", "float16"])
def test_the_builds_models_pass(verdicts, variant):
  result, _ = verdicts[variant]
  assert result.passed, result.message()


@pytest.mark.parametrize("variant, reason", [
    ("shuffled_labels", "below the floor"),
    ("wrong_input_scale", "below the floor"),
    ("collapsed_qat", "below the floor"),
    ("dead_class", "confident right float32 answer"),
])
def test_broken_models_fail_for_the_right_reason(verdicts, variant, reason):
  result, report = verdicts[variant]
  assert not result.passed
  assert any(reason in r for r in result.reasons), result.reasons
  if variant == "dead_class":  # The dead class is never predicted, and McNemar sees the loss
    assert min(report["per_class_recall"].values()) == 0.0  # as evidence, not noise.
    assert any("wrong alone" in r for r in result.reasons)
