"""The evaluate stage's predictions: the LiteRT probabilities the metadata stage already
computed for its app-runtime check are reused, not recomputed."""

import numpy as np
import pytest

from pipeline import evaluate as evaluate_lib
from pipeline.errors import PipelineError
from pipeline.preprocessing import MOBILENET_V2

pytestmark = pytest.mark.fast


def test_predict_models_reuses_the_known_probabilities_without_running_the_model():
  known = {"int8": np.array([[0.9, 0.1], [0.2, 0.8]], np.float32)}
  lines = []
  # Not a model at all: running it would fail.
  out = evaluate_lib.predict_models({"int8": b"not a tflite file"},
                                    np.zeros((2, 4, 4, 3), np.uint8), ["a", "b"], MOBILENET_V2,
                                    lines.append, known=known)
  assert out["int8"] is known["int8"]
  assert lines == ["int8 on 2 images: the metadata stage's (1/1)"]


def test_predict_models_runs_a_model_it_has_no_probabilities_for():
  with pytest.raises(PipelineError, match="not a loadable TFLite model"):
    evaluate_lib.predict_models({"float32": b"not a tflite file"},
                                np.zeros((2, 4, 4, 3), np.uint8), ["a", "b"], MOBILENET_V2,
                                known={"int8": np.zeros((2, 2), np.float32)})


def test_predict_variants_reuses_the_8_view_reference_the_metadata_stage_computed():
  # The metadata stage computes every probability evaluate scores, float32 over the 8 views
  # included, while the app runtimes run; evaluate must not compute any of them again.
  known = {name: np.full((2, 2), 0.5, np.float32)
           for name in ("int8_tta8", "float32", evaluate_lib.TTA_REFERENCE)}
  models = {"int8_tta8": b"not a tflite file", "float32": b"not a tflite file"}
  lines = []
  out = evaluate_lib.predict_variants(models, np.zeros((2, 4, 4, 3), np.uint8), ["a", "b"],
                                      MOBILENET_V2, log=lines.append, known=known)
  assert set(out) == set(known)
  assert out[evaluate_lib.TTA_REFERENCE] is known[evaluate_lib.TTA_REFERENCE]
  assert lines[-1] == ("float32_tta8 (float32 over the 8 views) on 2 images: the metadata "
                       "stage's")
  del known[evaluate_lib.TTA_REFERENCE]
  with pytest.raises(PipelineError, match="not a loadable TFLite model"):
    evaluate_lib.predict_variants(models, np.zeros((2, 4, 4, 3), np.uint8), ["a", "b"],
                                  MOBILENET_V2, known=known)
