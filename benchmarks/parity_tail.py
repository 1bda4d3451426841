r"""How far int8 moves each test image's scores from float32, over several builds.

The parity gate fails a build when int8 turns a confident right float32 answer into a wrong
one: a rare event (one image in a few builds) that a flip count cannot compare recipes by.
This benchmark measures the tail it comes from: per image, the largest change of any class
score between the shipped files (model_int8.tflite against model_float32.tflite, both in
the LiteRT interpreter), and of the true class's score where float32 was right.

  python -m benchmarks.parity_tail --build_dir=build/a1 --build_dir=build/a2 \
      --output_json=parity_tail.json
"""

import os
from typing import List

import numpy as np
from absl import app
from absl import flags

from benchmarks import common

FLAGS = flags.FLAGS
THRESHOLDS = (0.1, 0.2, 0.3)


def define_flags() -> None:
  """Defined when run, not on import (see benchmarks/compare.py)."""
  flags.DEFINE_multi_string("build_dir", [], "A finished build (repeatable).")
  flags.DEFINE_string("candidate", "int8", "The variant compared with --reference.")
  flags.DEFINE_string("reference", "float32", "The variant it should agree with.")
  flags.DEFINE_string("output_json", "parity_tail.json", "JSON report path.")
  flags.DEFINE_string("output_md", "", "Markdown report path (default: beside the JSON).")


def tail_figures(candidate: np.ndarray, reference: np.ndarray, labels: np.ndarray) -> dict:
  """Per-image score changes of `candidate` against `reference` ([N, K] probabilities)."""
  change = np.abs(candidate - reference).max(axis=1)
  rows = np.arange(len(labels))
  right = reference.argmax(axis=1) == labels
  true_drop = (reference[rows, labels] - candidate[rows, labels])[right]
  return {"images": len(labels), "mean": float(change.mean()),
          "p99": float(np.percentile(change, 99)), "max": float(change.max()),
          "over": {str(t): int((change > t).sum()) for t in THRESHOLDS},
          "right_true_drop_max": float(true_drop.max()) if len(true_drop) else 0.0,
          "top1_agreement": float(np.mean(candidate.argmax(1) == reference.argmax(1)))}


def measure(build_dirs: List[str], candidate: str, reference: str) -> dict:
  """Raises PipelineError: no builds, or a build without one of the two files."""
  from pipeline.config import model_file_name  # pylint: disable=g-import-not-at-top
  from pipeline.errors import PipelineError  # pylint: disable=g-import-not-at-top
  from pipeline.runner import LiteRunner  # pylint: disable=g-import-not-at-top
  if not build_dirs:
    raise PipelineError("give at least one --build_dir=BUILD")
  builds = []
  for build_dir in build_dirs:
    config, test = common.build_split(build_dir)
    pixels = test.pixels()
    probs = {}
    for variant in (candidate, reference):
      path = os.path.join(build_dir, model_file_name(variant))
      if not os.path.isfile(path):
        raise PipelineError(f"{path}: no such file; give builds that wrote {variant}")
      with open(path, "rb") as f:
        probs[variant] = LiteRunner(f.read(), config.model.normalization).predict(pixels)
    builds.append({"build_dir": build_dir,
                   **tail_figures(probs[candidate], probs[reference], test.labels)})
    common.progress(f"{build_dir}: done")
  return {"candidate": candidate, "reference": reference, "builds": builds}


def tail_cells(figures: dict) -> str:
  """The Markdown cells "mean | p99 | max | one count per threshold" of `tail_figures`."""
  counts = " | ".join(str(figures["over"][str(t)]) for t in THRESHOLDS)
  return f"{figures['mean']:.4f} | {figures['p99']:.3f} | {figures['max']:.3f} | {counts}"


def markdown(payload: dict) -> List[str]:
  over = " | ".join(f"images moved > {t}" for t in THRESHOLDS)
  lines = [f"{payload['candidate']} against {payload['reference']}, per test image: the largest "
           "change of any class score, and of the true class's score where "
           f"{payload['reference']} was right.", "",
           f"| build | mean | p99 | max | {over} | largest true-class drop | top-1 agreement |",
           "|---|---:|---:|---:|" + "---:|" * len(THRESHOLDS) + "---:|---:|"]
  for b in payload["builds"]:
    lines.append(f"| {b['build_dir']} | {tail_cells(b)} | {b['right_true_drop_max']:.3f} | "
                 f"{b['top1_agreement']:.4f} |")
  return lines


def main(argv: List[str]) -> None:
  common.main("benchmarks.parity_tail", argv,
              lambda: measure(FLAGS.build_dir, FLAGS.candidate, FLAGS.reference), markdown,
              FLAGS.output_json, FLAGS.output_md)


if __name__ == "__main__":
  define_flags()
  app.run(main)
