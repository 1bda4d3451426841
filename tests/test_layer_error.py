"""The per-layer int8 error map points at the layer that loses precision."""

import numpy as np
import pytest

from pipeline import export as export_lib
from pipeline import parity
from pipeline import layer_error
from pipeline import model as model_lib
from pipeline.errors import PipelineError
from pipeline.preprocessing import MOBILENET_V2
from pipeline.tf_compat import keras

SIZE = 48


@pytest.fixture(scope="module")
def converted():
  """A tiny float model's float32 and int8 (post-training quantized) TFLite, and images."""
  rng = np.random.default_rng(0)
  pixels = rng.integers(0, 256, (12, SIZE, SIZE, 3), dtype=np.uint8)
  keras.utils.set_random_seed(0)
  model = model_lib.build_classifier(3, SIZE, 0.35, "none", 0.0, seed=0)
  model_lib.init_batchnorm_statistics(model, MOBILENET_V2.apply_np(pixels))
  return (export_lib.convert_float(model), export_lib.convert_int8(model, pixels, MOBILENET_V2),
          pixels)


def _coarsen_weights(tflite: bytes, op_position: int, step: int = 32) -> bytes:
  """The int8 weights of the model's `op_position`-th CONV_2D rounded to multiples of `step`:
  that one layer quantized with 3 bits instead of 8."""
  from tensorflow.lite.tools import flatbuffer_utils  # pylint: disable=g-import-not-at-top
  model = flatbuffer_utils.convert_bytearray_to_object(bytearray(tflite))
  codes = [flatbuffer_utils.opcode_to_name(model, i) for i in range(len(model.operatorCodes))]
  graph = model.subgraphs[0]
  convs = [op for op in graph.operators if codes[op.opcodeIndex] == "CONV_2D"]
  weights = model.buffers[graph.tensors[convs[op_position].inputs[1]].buffer]
  w = weights.data.view(np.int8).astype(np.int32)
  weights.data = (np.clip(np.round(w / step) * step, -127, 127).astype(np.int8)).view(np.uint8)
  return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def test_a_well_quantized_model_loses_little_and_every_layer_is_matched(converted):
  float32, int8, pixels = converted
  error_map = layer_error.layer_map(int8, float32, pixels, MOBILENET_V2)
  layers = error_map["layers"]
  assert error_map["images"] == len(pixels)
  # Every compute op of the float model has its int8 counterpart (QUANTIZE ops aside).
  float_ops = layer_error._ops(layer_error._interpreter(float32))  # pylint: disable=protected-access
  assert len(layers) == len(float_ops)
  assert layers[0]["layer"] == "Conv1_relu" and layers[-1]["op"] == "SOFTMAX"
  # The first layer's only error is rounding: about 1/sqrt(12) of a quantization step.
  assert layers[0]["rmse_over_scale"] < 0.6, layers[0]
  assert layers[0]["sqnr_db"] > 30, layers[0]
  # A faithful model carries its noise along: no layer loses much SQNR by itself.
  assert max(l["sqnr_drop_db"] for l in layers) < 6, layer_error.worst_text(error_map)


@pytest.mark.parametrize("position", [2, 9])
def test_the_map_points_at_the_layer_quantized_badly_on_purpose(converted, position):
  float32, int8, pixels = converted
  bad = _coarsen_weights(int8, position)
  error_map = layer_error.layer_map(bad, float32, pixels, MOBILENET_V2)
  convs = [l for l in error_map["layers"] if l["op"] == "CONV_2D"]
  worst = error_map["layers"][error_map["worst"][0]]
  assert worst["index"] == convs[position]["index"], (worst, layer_error.worst_text(error_map))
  assert worst["layer"] in layer_error.worst_text(error_map)
  good = layer_error.layer_map(int8, float32, pixels, MOBILENET_V2)["layers"]
  assert worst["sqnr_drop_db"] > good[worst["index"]]["sqnr_drop_db"] + 3


def test_layer_names_drop_the_qat_prefix():
  assert layer_error.layer_name("m/quant_block_3_add/add;m/x") == "block_3_add"
  assert layer_error.layer_name("m/Conv1_relu/Relu6;m/bn_Conv1/FusedBatchNormV3") == "Conv1_relu"
  assert layer_error.layer_name("Identity") == "Identity"


def test_a_failed_gate_names_the_int8_layers_losing_the_most_precision(tmp_path):
  from pipeline import config as config_lib  # pylint: disable=g-import-not-at-top
  from pipeline.stages import gate as gate_stage  # pylint: disable=g-import-not-at-top
  from pipeline.stages.state import BuildState  # pylint: disable=g-import-not-at-top
  y = np.repeat([0, 1, 2], 100)
  cand = y.copy()
  cand[::3] = (y[::3] + 1) % 3  # A third of the answers changed: agreement far below 0.90.
  layers = [{"index": i, "op": "CONV_2D", "layer": f"block_{i}_project_BN", "shape": [1, 4],
             "scale": 0.1, "rmse_over_scale": 1.0, "sqnr_db": 20.0, "sqnr_drop_db": d}
            for i, d in enumerate([1.0, 25.0, 2.0, 3.0])]
  state = BuildState(options=config_lib.smoke_run(str(tmp_path)), log=lambda m: None, started="",
                     models={"int8": {"paired": parity.paired_comparison(
                         y, np.eye(3)[y], np.eye(3)[cand], list('abc'), bootstrap_rounds=200)}},
                     layer_error={"images": 32, "layers": layers, "worst": [1, 3, 2]})
  config = config_lib.smoke_config()
  state = gate_stage.run(config, state)
  assert not state.gate["passed"]
  assert "losing the most SQNR: block_1_project_BN (CONV_2D, SQNR down 25.0 dB" in (
      state.gate["message"])
  with pytest.raises(PipelineError, match="block_1_project_BN .* block_3_project_BN"):
    gate_stage.enforce(config, state)
