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
