"""Where int8 loses precision, layer by layer: the int8 and float32 TFLite models run on the
same images with every intermediate tensor kept, their ops matched, and each matched output
compared.

Per layer (an op of the int8 model and its float32 counterpart):
- `rmse_over_scale`: RMSE of the dequantized int8 output against the float32 output, divided
  by the int8 tensor's scale: TensorFlow's QuantizationDebugger figure. Rounding alone gives
  1/sqrt(12) ~ 0.29; above 1, the layer's error spans more than one quantization step.
- `sqnr_db`: signal-to-quantization-noise ratio of that output, 10 log10(sum f^2 / sum e^2).
- `sqnr_drop_db`: the SQNR this op loses itself: its noisiest input's SQNR minus its
  output's. An op fed only exact inputs (the first layer) starts from the SQNR its output's
  rounding alone would leave (1/sqrt(12) of a step). Errors accumulate along the network, so
  the first two figures grow with depth wherever the loss began; this one points at where it
  began: a few dB per layer is the network carrying its noise along, a large drop is a layer
  quantized badly.

The comparison is end to end (each model runs on its own inputs), as the parity gate compares
the two models. The shipped int8 model comes from quantization-aware training, so its weights
have drifted from float32's for a few epochs: that drift counts here too, as it does in the
gate. Runs without XNNPACK, which would fuse ops and drop their outputs.
"""

import difflib
from typing import List, Sequence

import numpy as np

from pipeline import atomic
from pipeline import quiet
from pipeline import runner
from pipeline.preprocessing import Normalization

IMAGES = 32  # Test images the build's map runs on: the figures settle well before that.
WORST = 3  # Layers named in report.md and in a failed gate's verdict.
ROUNDING_ONLY = 1 / np.sqrt(12)  # rmse/scale of a layer whose only error is its rounding.
_CAP_DB = 120.0  # SQNR of an output with no error at all (JSON has no infinity).
_SKIPPED = ("QUANTIZE", "DEQUANTIZE")  # Type conversions at the int8 model's edges.


def _interpreter(model: bytes):
  from ai_edge_litert.interpreter import Interpreter, OpResolverType  # pylint: disable=g-import-not-at-top
  with quiet.native_stderr():
    interp = Interpreter(
        model_content=bytes(model), experimental_preserve_all_tensors=True,
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interp.allocate_tensors()
  return interp


def _ops(interp) -> List[dict]:
  """The model's compute ops in execution order: type, output tensor, inputs, shape, name."""
  tensors = {t["index"]: t for t in interp.get_tensor_details()}
  ops = []
  for op in interp._get_ops_details():  # pylint: disable=protected-access
    if op["op_name"] in _SKIPPED or len(op["outputs"]) != 1:
      continue
    out = tensors[op["outputs"][0]]
    ops.append({"op": op["op_name"], "output": out["index"], "inputs": list(op["inputs"]),
                "shape": tuple(int(s) for s in out["shape"]), "name": out["name"],
                "quantization": out["quantization"]})
  return ops


def layer_name(tensor_name: str) -> str:
  """The Keras layer an op's output tensor is named after: 'model/quant_block_3_add/add;...'
  gives 'block_3_add' (QAT wrappers prefix 'quant_')."""
  parts = tensor_name.split(";")[0].split("/")
  name = parts[1] if len(parts) > 1 else parts[0]
  return name[len("quant_"):] if name.startswith("quant_") else name


def match_ops(int8_ops: Sequence[dict], float_ops: Sequence[dict]) -> List[tuple]:
  """Pairs (int8 op, float32 op) of the same type and output shape, in execution order
  (the longest common subsequence: a conversion may fuse or split an op on one side)."""
  keys = lambda ops: [(o["op"], o["shape"]) for o in ops]
  matcher = difflib.SequenceMatcher(None, keys(int8_ops), keys(float_ops), autojunk=False)
  return [(int8_ops[a + k], float_ops[b + k])
          for a, b, size in matcher.get_matching_blocks() for k in range(size)]


def layer_map(int8_model: bytes, float_model: bytes, pixels: np.ndarray,
              normalization: Normalization) -> dict:
  """The per-layer error of `int8_model` against `float_model` on uint8 images `pixels`.

  Returns:
    {"images", "layers": [{index, op, layer, shape, scale, rmse_over_scale, sqnr_db,
    sqnr_drop_db}] in execution order, "worst": the WORST layers by sqnr_drop_db}.
  """
  q_interp, f_interp = _interpreter(int8_model), _interpreter(float_model)
  pairs = [(q, f) for q, f in match_ops(_ops(q_interp), _ops(f_interp))
           if q["quantization"][0] > 0]  # A float output in the int8 model: nothing to map.
  sse, signal, count = (np.zeros(len(pairs)) for _ in range(3))
  for image in pixels:
    for interp in (q_interp, f_interp):
      detail = interp.get_input_details()[0]
      interp.set_tensor(detail["index"], runner.encode(image[None], detail, normalization))
      interp.invoke()
    for i, (q, f) in enumerate(pairs):
      scale, zero_point = q["quantization"]
      got = (q_interp.get_tensor(q["output"]).astype(np.float64) - zero_point) * scale
      want = f_interp.get_tensor(f["output"]).astype(np.float64)
      sse[i] += np.sum((got - want) ** 2)
      signal[i] += np.sum(want ** 2)
      count[i] += want.size
  layers, sqnr_of = [], {}
  for i, (q, _) in enumerate(pairs):
    scale = float(q["quantization"][0])
    sqnr = sqnr_of[q["output"]] = _db(sse[i] / max(signal[i], 1e-30))
    rounding_only = _db(count[i] * scale ** 2 / 12 / max(signal[i], 1e-30))
    before = min((sqnr_of[t] for t in q["inputs"] if t in sqnr_of), default=rounding_only)
    layers.append({"index": i, "op": q["op"], "layer": layer_name(q["name"]),
                   "shape": list(q["shape"]), "scale": scale,
                   "rmse_over_scale": float(np.sqrt(sse[i] / count[i]) / scale),
                   "sqnr_db": sqnr, "sqnr_drop_db": before - sqnr})
  worst = sorted(layers, key=lambda l: -l["sqnr_drop_db"])[:WORST]
  return {"images": int(len(pixels)), "layers": layers, "worst": [l["index"] for l in worst]}


def _db(noise_to_signal: float) -> float:
  """A noise-to-signal power ratio as an SQNR in dB (capped: no noise at all)."""
  return _CAP_DB if noise_to_signal <= 10 ** (-_CAP_DB / 10) else float(
      min(_CAP_DB, -10 * np.log10(noise_to_signal)))


def worst_text(error_map: dict) -> str:
  """The worst layers in one phrase, for logs and the gate's verdict."""
  layers = error_map["layers"]
  return ", ".join(f"{layers[i]['layer']} ({layers[i]['op']}, SQNR down "
                   f"{layers[i]['sqnr_drop_db']:.1f} dB, rmse/scale "
                   f"{layers[i]['rmse_over_scale']:.2f})"
                   for i in error_map["worst"])


def plot(error_map: dict, path: str) -> None:
  """rmse/scale and SQNR per layer, the worst layers marked."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  layers = error_map["layers"]
  x = [l["index"] for l in layers]
  fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
  top.semilogy(x, [l["rmse_over_scale"] for l in layers], ".-")
  top.axhline(ROUNDING_ONLY, color="grey", ls=":", label="rounding only (0.29)")
  top.set_ylabel("RMSE / int8 scale")
  top.legend(loc="upper left")
  bottom.plot(x, [l["sqnr_db"] for l in layers], ".-", label="SQNR of the output")
  bottom.bar(x, [max(l["sqnr_drop_db"], 0) for l in layers], color="tab:red", alpha=0.6,
             label="SQNR lost at this layer")
  for i in error_map["worst"]:
    bottom.annotate(layers[i]["layer"], (i, layers[i]["sqnr_db"]), fontsize=8, rotation=30,
                    xytext=(4, 6), textcoords="offset points")
  bottom.set_ylabel("dB")
  bottom.set_xlabel(f"layer (int8 op, execution order); {error_map['images']} test images")
  bottom.legend(loc="upper right")
  fig.suptitle("int8 vs float32, layer by layer")
  fig.tight_layout()
  atomic.save_figure(fig, path)
  plt.close(fig)

