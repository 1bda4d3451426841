"""Every TFLite variant and I/O type converts, runs, and has the asserted dtypes.

The build's own choices (int8 and int8_ptq with uint8 I/O, float32) are converted and checked
by the smoke build (test_end_to_end.py, test_gate_broken.py); this file covers the others."""

import numpy as np
import pytest

from pipeline import export as export_lib
from pipeline import model as model_lib
from pipeline.train import qat as qat_lib
from pipeline.errors import PipelineError
from pipeline.preprocessing import MOBILENET_V2
from pipeline.runner import LiteRunner
from pipeline.tf_compat import keras

SIZE = 32


@pytest.fixture(scope="module")
def models():
  rng = np.random.default_rng(0)
  calib = rng.integers(0, 256, (8, SIZE, SIZE, 3), dtype=np.uint8)
  calib[0, 0, 0], calib[0, -1, -1] = 0, 255
  # The backbone's initializers are unseeded: fix the global seed so every run converts the
  # same network.
  keras.utils.set_random_seed(0)
  float_model = model_lib.build_classifier(3, SIZE, 0.35, "none", 0.0, seed=0)
  model_lib.init_batchnorm_statistics(float_model, MOBILENET_V2.apply_np(calib))
  qat = qat_lib.quantize_model(float_model, 10, MOBILENET_V2,
                                 calibration_batches=[MOBILENET_V2.apply_np(calib)])
  return float_model, qat, calib


@pytest.mark.parametrize("variant,io_dtype", [
    ("int8", "int8"), ("int8", "float32"), ("int8_ptq", "int8"), ("int8_ptq", "float32"),
    ("float16", None)])
def test_variant_converts_runs_and_has_expected_dtypes(models, variant, io_dtype):
  float_model, qat, calib = models
  blob = export_lib.export_variants(float_model, qat, calib, MOBILENET_V2, io_dtype or "uint8",
                                    [variant])[variant]
  summary = export_lib.tensor_summary(blob)
  if variant.startswith("int8"):
    assert summary["input_dtype"] == summary["output_dtype"] == io_dtype
    assert summary["conv_weight_dtypes"] == ["int8"]
    checked = export_lib.check_int8(blob, io_dtype, MOBILENET_V2,
                                    require_raw_pixels=variant == "int8")
    assert "input_is_raw_pixels" not in checked  # Only a uint8 input can hold raw pixels.
    with pytest.raises(PipelineError, match="expected uint8"):  # Not what was asked for.
      export_lib.check_int8(blob, "uint8", MOBILENET_V2, require_raw_pixels=True)
  else:
    assert summary["input_dtype"] == summary["output_dtype"] == "float32"
    assert ("float16" in summary["tensor_dtypes"]) == (variant == "float16")
  runner = LiteRunner(blob, MOBILENET_V2)
  probs = runner.predict(calib)
  assert probs.shape == (len(calib), 3)
  np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=0.03)
  if not variant.startswith("int8"):
    # Float variants compute the Keras model's function. (int8 closeness is asserted on a
    # trained model in test_end_to_end: an untrained random network is chaotic under int8,
    # and it amplifies even float16 weight rounding: up to 0.077 seen on unseeded networks.)
    ref = float_model.predict(MOBILENET_V2.apply_np(calib), verbose=0)
    np.testing.assert_allclose(probs, ref, atol=0.1 if variant == "float16" else 1e-4)
    assert (probs.argmax(1) == ref.argmax(1)).mean() >= 0.75


def test_conversion_skips_the_saved_model_it_would_discard(models, monkeypatch):
  """from_keras_model's converter writes a SavedModel that it then discards for a
  MobileNetV2 (most of a conversion's time); the export converts the frozen graph alone."""
  from tensorflow.python.saved_model import save as saved_model_save  # pylint: disable=g-import-not-at-top
  saved, real_save = [], saved_model_save.save
  monkeypatch.setattr(saved_model_save, "save",
                      lambda *args, **kwargs: saved.append(args) or real_save(*args, **kwargs))
  float_model, _, calib = models
  runner = LiteRunner(export_lib.convert_float(float_model), MOBILENET_V2)
  ref = float_model.predict(MOBILENET_V2.apply_np(calib), verbose=0)
  np.testing.assert_allclose(runner.predict(calib), ref, atol=1e-4)
  assert not saved


@pytest.mark.parametrize("variant", ["int8", "float32"])
def test_more_interpreter_threads_give_the_same_probabilities_bit_for_bit(models, variant):
  """The build scores with every core (evaluate.THREADS): it must not change a figure."""
  float_model, qat, calib = models
  blob = export_lib.export_variants(float_model, qat, calib, MOBILENET_V2, "uint8",
                                    [variant])[variant]
  one = LiteRunner(blob, MOBILENET_V2, num_threads=1).predict(calib)
  np.testing.assert_array_equal(LiteRunner(blob, MOBILENET_V2, num_threads=4).predict(calib), one)


@pytest.mark.parametrize("variant", ["int8", "int8_tta8"])
def test_the_qat_variants_take_every_range_from_the_qat_model(models, variant):
  # Calibration could only move a range QAT left unset; int8_tta8's 8-view mean has a fixed
  # one, the int8 softmax grid, and its output scale matches int8's.
  float_model, qat, calib = models
  brighter = np.clip(calib.astype(int) * 2, 0, 255).astype(np.uint8)
  blobs = [export_lib.convert_variant(variant, float_model, qat, pixels, MOBILENET_V2, "uint8")
           for pixels in (calib, brighter[::-1])]
  assert blobs[0] == blobs[1]
  assert export_lib.tensor_summary(blobs[0])["output_quantization"] == [1 / 256, 0]
