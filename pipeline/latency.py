"""Times TFLite models with the LiteRT interpreter in interleaved rounds (A B A B ...), with the
figures LiteRT's benchmark_model reports: init, first inference, warm-up mean, steady-state
statistics, memory footprint at init and overall, and the process's peak resident set.

Measured on this host's CPU through the Python interpreter: an emulation of a device, not a
device."""

import os
import time
from typing import Dict, List, Optional, Sequence

import numpy as np

from pipeline import quiet
from pipeline import runner
from pipeline.preprocessing import MOBILENET_V2, Normalization


# With the default delegate (XNNPACK on CPU) or without it: the plain built-in kernels.
DELEGATES = ("xnnpack", "none")


def _status_bytes(field: str) -> int:
  """A memory field of /proc/self/status (VmRSS: resident now; VmHWM: peak resident)."""
  try:
    with open("/proc/self/status", encoding="ascii") as f:
      for line in f:
        if line.startswith(field + ":"):
          return int(line.split()[1]) * 1024
  except OSError:
    pass
  return 0


def _rss_bytes() -> int:
  return _status_bytes("VmRSS")


def _reset_peak_rss() -> bool:
  """Resets the kernel's peak-RSS mark of this process (Linux: clear_refs 5)."""
  try:
    with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
      f.write("5")
    return True
  except OSError:
    return False


def _interpreter(path: str, threads: int, delegate: str):
  from ai_edge_litert import interpreter as litert  # pylint: disable=g-import-not-at-top
  resolver = (litert.OpResolverType.AUTO if delegate == "xnnpack" else
              litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
  return litert.Interpreter(model_path=path, num_threads=threads,
                            experimental_op_resolver_type=resolver)


def _input_for(interpreter, images: Optional[np.ndarray], normalization: Normalization,
               seed: int) -> np.ndarray:
  """A valid input batch: a real image encoded as the tensor expects it, or random values."""
  detail = interpreter.get_input_details()[0]
  shape, dtype = detail["shape"], detail["dtype"]
  rng = np.random.default_rng(seed)
  if images is None:
    if dtype == np.float32:
      return rng.uniform(-1, 1, shape).astype(np.float32)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max + 1, shape).astype(dtype)
  img = images[rng.integers(len(images))][None]
  if img.shape[1:3] != tuple(shape[1:3]):
    from PIL import Image  # pylint: disable=g-import-not-at-top
    img = np.asarray(Image.fromarray(img[0]).resize((shape[2], shape[1]), Image.BILINEAR))[None]
  return runner.encode(img, detail, normalization)


def measure(models: Sequence[str], threads: Sequence[int], runs: int = 200,
            warmup_runs: int = 20, warmup_seconds: float = 0.0,
            images: Optional[np.ndarray] = None, seed: int = 0,
            normalizations: Optional[Dict[str, Normalization]] = None,
            delegates: Sequence[str] = ("xnnpack",)) -> List[Dict]:
  """Latency of every (model, threads, delegate), measured in the same interleaved rounds.

  Each round invokes every pair once, in order, so drift on a shared machine hits all
  pairs alike.

  Args:
    models: .tflite paths.
    threads: interpreter thread counts.
    runs: timed rounds.
    warmup_runs: untimed invokes per pair before timing.
    warmup_seconds: additional warm-up time per pair.
    images: uint8 images to feed (resized as needed), or None for random inputs.
    normalizations: each model's input normalization, for encoding `images` (default
      MOBILENET_V2, which Google's quantized MobileNetV2 also uses).
    seed: input selection.
    delegates: of DELEGATES: "xnnpack" (the interpreter's default delegate) and/or "none".

  Returns:
    Per pair: model, threads, delegate, init_ms, first_ms, warmup_mean_ms,
    min/median/mean/max/p90/p99/std in ms, size_bytes, init_memory_bytes (resident growth
    at init), overall_memory_bytes (after the first inference), peak_rss_bytes (the
    process's peak resident set over the whole measurement, every pair loaded) and
    rss_before_bytes (the process before any model was loaded), runs.
  """
  peak_known = _reset_peak_rss()
  before = _rss_bytes()  # The process before any model: Python, and TensorFlow if imported.
  pairs = []
  for path in models:
    for n, delegate in ((n, d) for n in threads for d in delegates):
      rss0 = _rss_bytes()
      t0 = time.perf_counter()
      with quiet.native_stderr():
        interp = _interpreter(path, n, delegate)
        interp.allocate_tensors()
      init_ms = (time.perf_counter() - t0) * 1e3
      init_memory = max(_rss_bytes() - rss0, 0)
      x = _input_for(interp, images, (normalizations or {}).get(path) or MOBILENET_V2, seed)
      index = interp.get_input_details()[0]["index"]
      interp.set_tensor(index, x)
      t0 = time.perf_counter()
      interp.invoke()
      first_ms = (time.perf_counter() - t0) * 1e3
      detail = interp.get_input_details()[0]
      pairs.append({"model": path, "threads": n, "delegate": delegate, "interp": interp,
                    "index": index, "x": x, "input_shape": [int(v) for v in detail["shape"]],
                    "input_dtype": np.dtype(detail["dtype"]).name,
                    "init_ms": init_ms, "first_ms": first_ms, "init_memory": init_memory,
                    "overall_memory": max(_rss_bytes() - rss0, 0), "times": [], "warmup": []})
  for p in pairs:
    deadline = time.perf_counter() + warmup_seconds
    while len(p["warmup"]) < warmup_runs or time.perf_counter() < deadline:
      t0 = time.perf_counter()
      p["interp"].invoke()
      p["warmup"].append((time.perf_counter() - t0) * 1e3)
  for _ in range(runs):
    for p in pairs:
      p["interp"].set_tensor(p["index"], p["x"])
      t0 = time.perf_counter()
      p["interp"].invoke()
      p["times"].append((time.perf_counter() - t0) * 1e3)
  peak = _status_bytes("VmHWM") if peak_known else None
  results = []
  for p in pairs:
    t = np.array(p["times"])
    ms = lambda v: round(float(v), 3)
    results.append({
        "model": p["model"], "threads": p["threads"], "delegate": p["delegate"], "runs": runs,
        "input_shape": p["input_shape"], "input_dtype": p["input_dtype"],
        "init_ms": ms(p["init_ms"]), "first_ms": ms(p["first_ms"]),
        "warmup_mean_ms": ms(np.mean(p["warmup"])) if p["warmup"] else None,
        "min_ms": ms(t.min()), "median_ms": ms(np.median(t)), "mean_ms": ms(t.mean()),
        "max_ms": ms(t.max()), "p90_ms": ms(np.percentile(t, 90)),
        "p99_ms": ms(np.percentile(t, 99)), "std_ms": ms(t.std()),
        "size_bytes": os.path.getsize(p["model"]), "init_memory_bytes": p["init_memory"],
        "overall_memory_bytes": p["overall_memory"], "peak_rss_bytes": peak,
        "rss_before_bytes": before,
    })
  return results
