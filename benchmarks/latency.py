r"""Latency of TFLite models with the LiteRT interpreter, side by side, in interleaved rounds.

  python -m benchmarks.latency --model=A.tflite --model=B.tflite --threads=1,2 \
      --reference=../shared/anchors/tf2_mobilenet_v2_1.0_224_ptq.tflite --output_json=lat.json
"""

import os
from typing import List

from absl import app
from absl import flags

from benchmarks import common

FLAGS = flags.FLAGS


def define_flags() -> None:
  """Defined when run, not on import: the tests import benchmark functions into one process,
  where two benchmarks' flags of the same name (--model, --build_dir) would clash."""
  flags.DEFINE_multi_string("model", [], "A .tflite to time (repeatable).")
  flags.DEFINE_list("threads", ["1", "2"], "Interpreter thread counts.")
  flags.DEFINE_integer("runs", 200, "Timed rounds; each round invokes every model once.",
                       lower_bound=1)
  flags.DEFINE_integer("warmup_runs", 20, "Untimed invokes per model and thread count.",
                       lower_bound=0)
  flags.DEFINE_float("warmup_seconds", 0.0, "Extra warm-up time per model and thread count.")
  flags.DEFINE_string("reference", "", "A model every result is compared with (median ratio), "
                      "timed in the same rounds.")
  flags.DEFINE_string("images_dir", "", "Feed real images from this folder (any size); default: "
                      "random inputs.")
  flags.DEFINE_integer("seed", 0, "Input selection seed.")
  flags.DEFINE_list("delegates", ["xnnpack", "none"], "xnnpack: the interpreter's default CPU "
                    "delegate; none: the built-in kernels alone (benchmark_model's "
                    "--use_xnnpack=false).")
  flags.DEFINE_string("output_json", "latency.json", "JSON report path.")
  flags.DEFINE_string("output_md", "", "Markdown report path (default: beside the JSON).")


def _load_images(folder: str, size: int, limit: int = 32):
  import numpy as np  # pylint: disable=g-import-not-at-top
  from pipeline import images as images_lib  # pylint: disable=g-import-not-at-top
  from pipeline.errors import PipelineError  # pylint: disable=g-import-not-at-top
  paths = []
  for root, _, names in os.walk(folder):
    paths += [os.path.join(root, n) for n in sorted(names)
              if n.lower().endswith(images_lib.IMAGE_SUFFIXES)]
  if not paths:
    raise PipelineError(f"{folder}: no images found; check --images_dir")
  pixels = []
  for path in sorted(paths)[:limit]:
    try:
      pixels.append(images_lib.load_rgb(path, size)[0])
    except images_lib.ImageError as e:
      raise PipelineError(f"{path}: {e}; remove it from --images_dir") from None
  return np.stack(pixels)


def _input_size(path: str) -> int:
  """The model's input height in pixels.

  Raises:
    PipelineError: no such file, or not a TFLite model.
  """
  from ai_edge_litert.interpreter import Interpreter  # pylint: disable=g-import-not-at-top
  from pipeline import quiet  # pylint: disable=g-import-not-at-top
  from pipeline.errors import PipelineError  # pylint: disable=g-import-not-at-top
  if not os.path.isfile(path):
    raise PipelineError(f"{path}: model file not found")
  try:
    with quiet.native_stderr():
      return int(Interpreter(model_path=path).get_input_details()[0]["shape"][1])
  except (ValueError, RuntimeError) as e:
    raise PipelineError(f"{path}: not a loadable TFLite model ({str(e).splitlines()[0]}); "
                        "give a .tflite file") from None


def _normalization(path: str):
  """The model's embedded input normalization; None (the default) for a model without ours,
  such as Google's reference MobileNetV2."""
  from pipeline import tflite_metadata  # pylint: disable=g-import-not-at-top
  from pipeline.errors import PipelineError  # pylint: disable=g-import-not-at-top
  with open(path, "rb") as f:
    blob = f.read()
  try:
    return tflite_metadata.normalization(tflite_metadata.read(blob))
  except PipelineError:
    return None


def run(models: List[str], threads: List[int], runs: int, warmup_runs: int,
        warmup_seconds: float, reference: str, images_dir: str, seed: int,
        delegates=("xnnpack",)) -> dict:
  """Measures every model (and the reference) in the same interleaved rounds.

  Returns:
    {"results": [...], "reference": path or None, "settings": {...}}.
  """
  from pipeline import latency  # pylint: disable=g-import-not-at-top
  all_models = list(dict.fromkeys(models + ([reference] if reference else [])))
  sizes = [_input_size(p) for p in all_models]  # Checks every file before any is timed.
  # Decoded once at the largest input size; a smaller model's input is resized down from it.
  images = _load_images(images_dir, max(sizes)) if images_dir else None
  results = latency.measure(all_models, threads, runs=runs, warmup_runs=warmup_runs,
                            warmup_seconds=warmup_seconds, images=images, seed=seed,
                            normalizations={p: _normalization(p) for p in all_models},
                            delegates=delegates)
  warnings = []
  if reference:
    ref = {(r["threads"], r["delegate"]): r["median_ms"] for r in results
           if r["model"] == reference}
    ref_shape = next(r["input_shape"] for r in results if r["model"] == reference)
    for r in results:
      r["ratio_to_reference"] = round(r["median_ms"] / ref[(r["threads"], r["delegate"])], 4)
      if r["input_shape"] != ref_shape and r["threads"] == results[0]["threads"]:
        warnings.append(f"{os.path.basename(r['model'])} takes {r['input_shape']}, the reference "
                        f"{ref_shape}: its ratio compares different amounts of work")
  return {"results": results, "reference": reference or None, "warnings": warnings,
          "settings": {"runs": runs, "warmup_runs": warmup_runs, "warmup_seconds": warmup_seconds,
                       "inputs": images_dir or "random", "interleaved": True,
                       "measured_on": EMULATION,
                       "cpu_count": os.cpu_count(), "cpu_model": _cpu_model(),
                       "versions": _versions()}}


EMULATION = ("this host's CPU through the Python LiteRT interpreter: an emulation of a device, "
             "not a device; measure on the target phone before promising a latency")


def _cpu_model() -> str:
  try:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  import platform  # pylint: disable=g-import-not-at-top
  return platform.processor() or platform.machine()


def _versions() -> dict:
  from importlib import metadata  # pylint: disable=g-import-not-at-top
  out = {}
  for package in ("ai-edge-litert", "tensorflow", "numpy"):
    try:
      out[package] = metadata.version(package)
    except metadata.PackageNotFoundError:
      out[package] = None
  return out


def markdown(payload: dict) -> List[str]:
  """The results as a Markdown table, with the machine and the versions measured on."""
  ref, settings = payload["reference"], payload["settings"]
  lines = ["# Latency (LiteRT interpreter, interleaved rounds)", "",
           f"Measured on {EMULATION}.", "",
           f"{settings['runs']} timed rounds after {settings['warmup_runs']} warm-up invokes; "
           f"inputs: {settings['inputs']}." +
           (f" Reference: `{os.path.basename(ref)}`." if ref else ""), "",
           f"CPU: {settings['cpu_model']} ({settings['cpu_count']} cores); " +
           ", ".join(f"{k} {v}" for k, v in settings["versions"].items()) + ".", ""]
  for warning in payload.get("warnings", []):
    lines += [f"**Warning:** {warning}.", ""]
  lines += ["| model | input | threads | delegate | size MB | init ms | first ms | warm-up "
            "mean | min | median | mean | max | p90 | p99 | std | memory MB: init / overall |" +
            (" ratio to ref |" if ref else ""),
            "|---|---|---:|---|" + "---:|" * 12 + ("---:|" if ref else "")]
  mb = lambda b: f"{b / 1e6:.1f}"
  for r in payload["results"]:
    warm = "n/a" if r["warmup_mean_ms"] is None else f"{r['warmup_mean_ms']:.2f}"
    lines.append(
        f"| {os.path.basename(r['model'])} | {r['input_dtype']} "
        f"{'x'.join(map(str, r['input_shape'][1:]))} | {r['threads']} | {r['delegate']} | "
        f"{r['size_bytes'] / 1e6:.2f} | {r['init_ms']:.1f} | {r['first_ms']:.2f} | {warm} | "
        f"{r['min_ms']:.2f} | {r['median_ms']:.2f} | {r['mean_ms']:.2f} | {r['max_ms']:.2f} | "
        f"{r['p90_ms']:.2f} | {r['p99_ms']:.2f} | {r['std_ms']:.2f} | "
        f"{mb(r['init_memory_bytes'])} / {mb(r['overall_memory_bytes'])} |" +
        (f" {r['ratio_to_reference']:.3f} |" if ref else ""))
  first = payload["results"][0] if payload["results"] else {}
  if first.get("peak_rss_bytes"):
    lines += ["", f"Peak resident set of the process over the whole run (every model loaded, "
              f"as the rounds interleave them): {mb(first['peak_rss_bytes'])} MB, "
              f"{mb(first['peak_rss_bytes'] - first['rss_before_bytes'])} MB above the "
              f"{mb(first['rss_before_bytes'])} MB it held before any model was loaded (Python "
              "and the TensorFlow that the metadata reader imports)."]
  return lines


def measure_from_flags() -> dict:
  from pipeline.errors import PipelineError  # pylint: disable=g-import-not-at-top
  if not FLAGS.model:
    raise PipelineError("give at least one --model=PATH.tflite")
  try:
    threads = [int(t) for t in FLAGS.threads]
  except ValueError:
    threads = []
  if not threads or min(threads) < 1:
    raise PipelineError(f"--threads={','.join(FLAGS.threads)}: use thread counts >= 1, e.g. 1,2")
  from pipeline.latency import DELEGATES  # pylint: disable=g-import-not-at-top
  bad = [d for d in FLAGS.delegates if d not in DELEGATES]
  if bad or not FLAGS.delegates:
    raise PipelineError(f"--delegates={','.join(FLAGS.delegates)}: use {' and/or '.join(DELEGATES)}")
  return run(FLAGS.model, threads, FLAGS.runs, FLAGS.warmup_runs, FLAGS.warmup_seconds,
             FLAGS.reference, FLAGS.images_dir, FLAGS.seed, tuple(FLAGS.delegates))


def main(argv: List[str]) -> None:
  common.main("benchmarks.latency", argv, measure_from_flags, markdown, FLAGS.output_json,
              FLAGS.output_md)


if __name__ == "__main__":
  define_flags()
  app.run(main)
