"""Export stage: TFLite variants as bytes (int8 QAT, int8 PTQ, float16, float32)."""

from typing import Dict, Iterable

import numpy as np

from pipeline import model as model_lib
from pipeline import quiet
from pipeline import runner
from pipeline.errors import PipelineError
from pipeline.preprocessing import Normalization
from pipeline.tf_compat import keras, tf

_TF_DTYPES = {"uint8": tf.uint8, "int8": tf.int8, "float32": tf.float32}
_NP_DTYPES = {"uint8": np.uint8, "int8": np.int8, "float32": np.float32}


def calibration_pixels(train_pixels_fn, labels: np.ndarray, count: int, seed: int) -> np.ndarray:
  """Picks up to `count` real training images, stratified by class, for calibration.

  Args:
    train_pixels_fn: maps an index array to uint8 images [n, S, S, 3].
    labels: training labels (to spread the picks over classes).
    count: how many images.
    seed: which ones.

  Returns:
    uint8 images [min(count, N), S, S, 3].
  """
  rng = np.random.default_rng(seed)
  order = rng.permutation(len(labels))
  # Round-robin over classes so rare classes are represented in the activation ranges.
  by_class = [order[labels[order] == c] for c in np.unique(labels)]
  picks = []
  i = 0
  while len(picks) < min(count, len(labels)):
    for idx in by_class:
      if i < len(idx) and len(picks) < count:
        picks.append(idx[i])
    i += 1
  return train_pixels_fn(np.sort(np.array(picks, np.int64)))


# A QAT model carries every range it needs (int8_tta8's 8-view mean too: see
# model.dihedral_tta_model), so calibration changes nothing in its int8 file; the converter
# still refuses full-integer conversion without a representative dataset, so it gets a few.
QAT_CALIBRATION = 2


def _skip_saved_model() -> None:
  """The converter's signal to convert the frozen Keras graph (see `_converter`)."""


def _converter(model: keras.Model) -> tf.lite.TFLiteConverter:
  """`from_keras_model`'s converter, minus a SavedModel it writes and then throws away.

  Its convert() first saves the model as a temporary SavedModel (a trace of every layer's
  call: about 90% of a conversion), and with `experimental_lower_to_saved_model` off it then
  discards that SavedModel (kept only for functions with an `implements` attribute, which
  MobileNetV2 has none of) and converts the frozen Keras graph. Skipping the save gives the
  same ops, tensors and outputs in a fraction of the time (BUILD.md, Times).
  """
  converter = tf.lite.TFLiteConverter.from_keras_model(model)
  converter.experimental_lower_to_saved_model = False
  # A private hook of the pinned TensorFlow; if a later one drops it, only speed is lost.
  converter._convert_as_saved_model = _skip_saved_model  # pylint: disable=protected-access
  return converter


def _representative(pixels: np.ndarray, normalization: Normalization):
  def gen() -> Iterable:
    for img in pixels:
      yield [normalization.apply_np(img[None])]
  return gen


def convert_int8(model: keras.Model, calibration: np.ndarray, normalization: Normalization,
                 io_dtype: str = "uint8") -> bytes:
  """Full-integer int8 conversion (int8 weights and activations, int8-only kernels).

  Works for a QAT model (which carries its own ranges) and for a float model (post-training
  quantization, calibrated on `calibration`, real training images).

  Args:
    model: the QAT or float Keras model.
    calibration: uint8 images for the representative dataset.
    normalization: maps pixels to the model's float input.
    io_dtype: the input and output tensor type: uint8 (phone APIs), int8 or float32.

  Returns:
    The .tflite flatbuffer.
  """
  converter = _converter(model)
  converter.optimizations = [tf.lite.Optimize.DEFAULT]
  converter.representative_dataset = _representative(calibration, normalization)
  converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
  converter.inference_input_type = _TF_DTYPES[io_dtype]
  converter.inference_output_type = _TF_DTYPES[io_dtype]
  with quiet.native_stderr():  # The converter's warnings are about its own internals.
    return converter.convert()


def convert_float(model: keras.Model, float16: bool = False) -> bytes:
  """Float32 conversion, or float16 weights (float32 I/O and compute on CPU)."""
  converter = _converter(model)
  if float16:
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_types = [tf.float16]
  with quiet.native_stderr():
    return converter.convert()


def tensor_summary(tflite: bytes) -> dict:
  """Input/output dtypes and quantization, and the dtypes of the weight tensors."""
  from ai_edge_litert.interpreter import Interpreter  # pylint: disable=g-import-not-at-top
  with quiet.native_stderr():
    interp = Interpreter(model_content=tflite)
  inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
  weights, dtypes = set(), set()
  for t in interp.get_tensor_details():
    dtypes.add(np.dtype(t["dtype"]).name)
    name = t["name"].lower()
    if len(t["shape"]) == 4 and ("conv" in name or "depthwise" in name):
      weights.add(np.dtype(t["dtype"]).name)
  return {
      "input_dtype": np.dtype(inp["dtype"]).name, "input_shape": inp["shape"].tolist(),
      "input_quantization": [float(inp["quantization"][0]), int(inp["quantization"][1])],
      "output_dtype": np.dtype(out["dtype"]).name, "output_shape": out["shape"].tolist(),
      "output_quantization": [float(out["quantization"][0]), int(out["quantization"][1])],
      "conv_weight_dtypes": sorted(weights),
      "tensor_dtypes": sorted(dtypes),  # float16 weights show here (then DEQUANTIZE).
  }


def check_int8(tflite: bytes, io_dtype: str, normalization: Normalization,
               require_raw_pixels: bool) -> dict:
  """Asserts an int8 model's I/O dtypes; for uint8 input, that it takes raw pixels.

  Raises:
    PipelineError: the model is not what was asked for.
  """
  summary = tensor_summary(tflite)
  expected = np.dtype(_NP_DTYPES[io_dtype]).name
  if summary["input_dtype"] != expected or summary["output_dtype"] != expected:
    raise PipelineError(f"int8 export produced {summary['input_dtype']}->"
                        f"{summary['output_dtype']} I/O, expected {expected}")
  if summary["conv_weight_dtypes"] != ["int8"]:
    raise PipelineError(f"int8 export has conv weights of type {summary['conv_weight_dtypes']}")
  if io_dtype == "uint8":
    scale, zero_point = summary["input_quantization"]
    raw = runner.input_is_raw_pixels((scale, zero_point), normalization)
    summary["input_is_raw_pixels"] = raw
    if require_raw_pixels and not raw:
      raise PipelineError(
          f"the uint8 input quantization (scale {scale:.6f}, zero point {zero_point}) does not "
          f"encode pixels 0..255 for normalization mean {normalization.mean} std "
          f"{normalization.std}; phone APIs would feed wrong values")
  return summary


def export_variants(float_model: keras.Model, qat_model: keras.Model, calibration: np.ndarray,
                    normalization: Normalization, io_dtype: str,
                    variants: Iterable[str]) -> Dict[str, bytes]:
  """Converts every requested variant.

  Returns:
    {"int8": QAT int8, "int8_ptq": PTQ int8, "float16": ..., "float32": ...} (as requested).
  """
  return {variant: convert_variant(variant, float_model, qat_model, calibration, normalization,
                                   io_dtype) for variant in variants}


def convert_variant(variant: str, float_model: keras.Model, qat_model: keras.Model,
                    calibration: np.ndarray, normalization: Normalization,
                    io_dtype: str) -> bytes:
  """One variant: int8 (from the QAT model), int8_tta8 (the QAT model over 8 dihedral views),
  int8_ptq, float16 or float32 (from the float model)."""
  if variant == "int8":
    return convert_int8(qat_model, calibration[:QAT_CALIBRATION], normalization, io_dtype)
  if variant == "int8_tta8":
    return convert_int8(model_lib.dihedral_tta_model(qat_model, quantized=True),
                        calibration[:QAT_CALIBRATION], normalization, io_dtype)
  if variant == "int8_ptq":
    return convert_int8(float_model, calibration, normalization, io_dtype)
  return convert_float(float_model, float16=variant == "float16")



