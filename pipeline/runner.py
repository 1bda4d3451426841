"""One TFLite runner (LiteRT interpreter) for the build, the tests and the benchmarks."""

import hashlib
import os
from typing import Optional

import numpy as np

from pipeline import quiet
from pipeline.errors import PipelineError
from pipeline.preprocessing import Normalization


def _check_image_size(name: str, image_size: int, pixels: np.ndarray) -> None:
  if pixels.shape[1:3] != (image_size, image_size):
    raise PipelineError(f"{name}: expects {image_size}x{image_size} images, "
                        f"got {pixels.shape[1]}x{pixels.shape[2]}")


def input_is_raw_pixels(quantization, normalization: Normalization) -> bool:
  """True when a uint8 input tensor with this (scale, zero point) already holds raw pixels:
  its dequantized 0 and 255 are what the normalization maps 0 and 255 to (within one
  quantization step)."""
  scale, zero_point = quantization
  lo, hi = normalization.input_range()
  return (abs((0 - zero_point) * scale - lo) <= scale and
          abs((255 - zero_point) * scale - hi) <= scale)


def encode(pixels: np.ndarray, input_detail: dict, normalization: Normalization) -> np.ndarray:
  """uint8 pixels [N, H, W, 3] as the input tensor `input_detail` takes them.

  - uint8 input that encodes the normalization: the pixels themselves (what phone APIs feed);
  - float32 input: normalized pixels;
  - other integer input: normalized, then quantized with the tensor's own scale and zero point.
  """
  dtype = input_detail["dtype"]
  if dtype == np.uint8 and input_is_raw_pixels(input_detail["quantization"], normalization):
    return pixels.astype(np.uint8)
  x = normalization.apply_np(pixels)
  if dtype == np.float32:
    return x
  scale, zero_point = input_detail["quantization"]
  info = np.iinfo(dtype)
  return np.clip(np.round(x / scale + zero_point), info.min, info.max).astype(dtype)


class LiteRunner:
  """Feeds uint8 RGB pixels to a .tflite and returns float class probabilities.

  Whatever the model's input type, callers pass the raw pixels an app would have:
  - float32 input: pixels are normalized with the model's Normalization;
  - uint8/int8 input: pixels are normalized, then quantized with the input tensor's own
    scale and zero point (for a model whose input quantization encodes the normalization,
    this is the identity on uint8 pixels, up to rounding);
  outputs are dequantized with the output tensor's own parameters.
  """

  def __init__(self, model_path_or_bytes, normalization: Normalization,
               num_threads: Optional[int] = None):
    from ai_edge_litert.interpreter import Interpreter  # pylint: disable=g-import-not-at-top
    if isinstance(model_path_or_bytes, (bytes, bytearray)):
      kwargs = {"model_content": bytes(model_path_or_bytes)}
      self.name = "<bytes>"
    else:
      if not os.path.isfile(model_path_or_bytes):
        raise PipelineError(f"{model_path_or_bytes}: model file not found")
      kwargs = {"model_path": model_path_or_bytes}
      self.name = model_path_or_bytes
    self._source, self._num_threads = model_path_or_bytes, num_threads
    try:
      with quiet.native_stderr():  # "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."
        self.interpreter = Interpreter(num_threads=num_threads, **kwargs)
        self.interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as e:
      raise PipelineError(f"{self.name}: not a loadable TFLite model ({str(e).splitlines()[0]})")
    self.normalization = normalization
    self.input = self.interpreter.get_input_details()[0]
    self.output = self.interpreter.get_output_details()[0]
    self.batch_size = int(self.input["shape"][0])
    self.image_size = int(self.input["shape"][1])

  def copy(self) -> "LiteRunner":
    """Another runner of the same model with an interpreter of its own. An interpreter is
    not thread-safe: concurrent callers each need one (see RunnerPool)."""
    return LiteRunner(self._source, self.normalization, self._num_threads)

  def prepare(self, pixels: np.ndarray) -> np.ndarray:
    """Turns uint8 pixels [N, H, W, 3] into the input tensor's dtype and encoding."""
    return encode(pixels, self.input, self.normalization)

  def invoke_prepared(self, x: np.ndarray) -> np.ndarray:
    """Runs one already-prepared input batch; returns dequantized float outputs."""
    self.interpreter.set_tensor(self.input["index"], x)
    self.interpreter.invoke()
    out = self.interpreter.get_tensor(self.output["index"])
    if self.output["dtype"] != np.float32:
      scale, zero_point = self.output["quantization"]
      out = (out.astype(np.float32) - zero_point) * scale
    return out

  def predict(self, pixels: np.ndarray) -> np.ndarray:
    """Class probabilities [N, K] for uint8 pixels [N, H, W, 3] (any N)."""
    _check_image_size(self.name, self.image_size, pixels)
    outputs = []
    for i in range(0, len(pixels), self.batch_size):
      outputs.append(self.invoke_prepared(self.prepare(pixels[i:i + self.batch_size])))
    return np.concatenate(outputs, axis=0)


class RunnerPool:
  """Runners of one model shared by threads: each call borrows a runner no other thread is
  using (waiting for one when all are busy), so no interpreter is ever run by two threads."""

  def __init__(self, runner, size: int):
    """`runner` and size - 1 copies of it (a runner without `copy`, e.g. KerasRunner, is
    one runner whose calls take turns)."""
    import queue  # pylint: disable=g-import-not-at-top
    self._free = queue.Queue()
    self._free.put(runner)
    for _ in range(size - 1 if hasattr(runner, "copy") else 0):
      self._free.put(runner.copy())

  def predict(self, pixels: np.ndarray) -> np.ndarray:
    runner = self._free.get()
    try:
      return runner.predict(pixels)
    finally:
      self._free.put(runner)


def keras_predict(model, pixels: np.ndarray, normalization: Normalization,
                  batch_size: int = 64, view=None) -> np.ndarray:
  """A Keras model's outputs for uint8 pixels [N, H, W, 3], normalized batch by batch.

  A whole split normalized at once is 4 bytes per pixel value (1.9 GB for HAM10000's 3140
  training images at 224 px), and Keras' predict on an array that size kept enough copies
  that 8 views of three builds ran a 24 GB machine out of memory (benchmarks.readout).

  Args:
    model: a Keras model taking normalized images.
    pixels: the images.
    normalization: the model's.
    batch_size: images per call.
    view: (k, mirrored) of `preprocessing.DIHEDRAL` to predict that view of each image, or
      None for the images as they are.
  """
  from pipeline import preprocessing  # pylint: disable=g-import-not-at-top
  outputs = []
  for i in range(0, len(pixels), batch_size):
    batch = pixels[i:i + batch_size]
    if view is not None:
      batch = preprocessing.dihedral_view_np(batch, *view)
    outputs.append(np.asarray(model.predict_on_batch(normalization.apply_np(batch))))
  return np.concatenate(outputs, axis=0)


class KerasRunner:
  """The float Keras model of a build (model_float.keras), with LiteRunner's interface.

  Scores a build that stopped before export (--stop_after=finetune) with the same
  benchmark as its TFLite variants.
  """

  def __init__(self, path: str, normalization: Normalization):
    from pipeline.tf_compat import keras  # pylint: disable=g-import-not-at-top
    try:
      self.model = keras.models.load_model(path, compile=False)
    except (OSError, ValueError) as e:
      raise PipelineError(f"{path}: not a loadable Keras model ({str(e).splitlines()[0]})")
    self.name = path
    self.normalization = normalization
    self.image_size = int(self.model.input_shape[1])

  def predict(self, pixels: np.ndarray) -> np.ndarray:
    """Class probabilities [N, K] for uint8 pixels [N, H, W, 3]."""
    _check_image_size(self.name, self.image_size, pixels)
    return keras_predict(self.model, pixels, self.normalization)


def _load_keras_build_model(path: str):
  """A KerasRunner for a build's .keras model, with the labels.txt and config.json (its
  normalization) of its build directory."""
  from pipeline import labels as labels_lib  # pylint: disable=g-import-not-at-top
  from pipeline.config import CONFIG_FILE, BuildConfig  # pylint: disable=g-import-not-at-top
  if not os.path.isfile(path):
    raise PipelineError(f"{path}: model file not found")
  build_dir = os.path.dirname(os.path.abspath(path))
  try:
    labels = list(labels_lib.read_labels(os.path.join(build_dir, labels_lib.FILE_NAME)))
    normalization = BuildConfig.load(os.path.join(build_dir, CONFIG_FILE)).model.normalization
  except PipelineError as e:
    raise PipelineError(f"{path}: a .keras model is read from its build directory, which needs "
                        f"labels.txt and config.json ({e}); give a model_float.keras that "
                        "pipeline.build wrote") from e
  meta = {"labels": labels, "display_names": [], "mean": list(normalization.mean),
          "std": list(normalization.std), "sha256": None}
  return KerasRunner(path, normalization), meta


def load_model_file(path: str, num_threads: Optional[int] = None):
  """A runner for a model built by the pipeline, set up from what the build recorded.

  A .tflite is described by its own metadata; a .keras (the float model of a build) by the
  labels.txt and report.json of its build directory.

  Args:
    path: the .tflite (or build's .keras) file.
    num_threads: interpreter threads (TFLite only).

  Returns:
    (LiteRunner or KerasRunner, metadata dict as from tflite_metadata.read plus "sha256"
    of the .tflite file, None for a .keras).

  Raises:
    PipelineError: unreadable file, or no labels/normalization in the metadata.
  """
  if path.endswith(".keras"):
    return _load_keras_build_model(path)
  from pipeline import tflite_metadata  # pylint: disable=g-import-not-at-top
  try:
    with open(path, "rb") as f:
      blob = f.read()
  except OSError as e:
    raise PipelineError(f"{path}: cannot read the model ({e.strerror}); check --model") from e
  try:
    meta = tflite_metadata.read(blob)
  except PipelineError as e:
    raise PipelineError(f"{path}: {e}") from e
  meta["sha256"] = hashlib.sha256(blob).hexdigest()  # Ties referral.json to this very file.
  normalization = tflite_metadata.normalization(meta)
  if not meta["labels"] or normalization is None:
    raise PipelineError(f"{path}: the model has no labels or normalization in its metadata; "
                        "use a model built by pipeline.build")
  return LiteRunner(blob, normalization, num_threads), meta
