"""Times TFLite models with the LiteRT interpreter in interleaved rounds (A B A B ...)."""

import os
import time
from typing import Dict, List, Optional, Sequence

import numpy as np

from pipeline import quiet
from pipeline import runner
from pipeline.preprocessing import MOBILENET_V2, Normalization


def _rss_bytes() -> int:
  try:
    with open("/proc/self/status", encoding="ascii") as f:
      for line in f:
        if line.startswith("VmRSS:"):
          return int(line.split()[1]) * 1024
  except OSError:
    pass
  return 0


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
            normalizations: Optional[Dict[str, Normalization]] = None) -> List[Dict]:
  """Latency of every (model, threads) pair, measured in the same interleaved rounds.

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

  Returns:
    Per pair: model, threads, init_ms, first_ms, min/median/mean/p90/p99/std in ms,
    size_bytes, rss_growth_bytes, runs.
  """
  from ai_edge_litert.interpreter import Interpreter  # pylint: disable=g-import-not-at-top
  pairs = []
  for path in models:
    for n in threads:
      rss0 = _rss_bytes()
      t0 = time.perf_counter()
      with quiet.native_stderr():
        interp = Interpreter(model_path=path, num_threads=n)
        interp.allocate_tensors()
      init_ms = (time.perf_counter() - t0) * 1e3
      x = _input_for(interp, images, (normalizations or {}).get(path) or MOBILENET_V2, seed)
      index = interp.get_input_details()[0]["index"]
      interp.set_tensor(index, x)
      t0 = time.perf_counter()
      interp.invoke()
      first_ms = (time.perf_counter() - t0) * 1e3
      detail = interp.get_input_details()[0]
      pairs.append({"model": path, "threads": n, "interp": interp, "index": index, "x": x,
                    "input_shape": [int(v) for v in detail["shape"]],
                    "input_dtype": np.dtype(detail["dtype"]).name,
                    "init_ms": init_ms, "first_ms": first_ms,
                    "rss_growth_bytes": max(_rss_bytes() - rss0, 0), "times": []})
  for p in pairs:
    deadline = time.perf_counter() + warmup_seconds
    done = 0
    while done < warmup_runs or time.perf_counter() < deadline:
      p["interp"].invoke()
      done += 1
  for _ in range(runs):
    for p in pairs:
      p["interp"].set_tensor(p["index"], p["x"])
      t0 = time.perf_counter()
      p["interp"].invoke()
      p["times"].append((time.perf_counter() - t0) * 1e3)
  results = []
  for p in pairs:
    t = np.array(p["times"])
    results.append({
        "model": p["model"], "threads": p["threads"], "runs": runs,
        "input_shape": p["input_shape"], "input_dtype": p["input_dtype"],
        "init_ms": round(p["init_ms"], 3), "first_ms": round(p["first_ms"], 3),
        "min_ms": round(float(t.min()), 3), "median_ms": round(float(np.median(t)), 3),
        "mean_ms": round(float(t.mean()), 3), "p90_ms": round(float(np.percentile(t, 90)), 3),
        "p99_ms": round(float(np.percentile(t, 99)), 3), "std_ms": round(float(t.std()), 3),
        "size_bytes": os.path.getsize(p["model"]), "rss_growth_bytes": p["rss_growth_bytes"],
    })
  return results
