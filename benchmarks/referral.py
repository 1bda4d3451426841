r"""Finished builds' referral thresholds re-fit by today's rule, beside the ones they shipped.

Each build's report.json holds the referral threshold its evaluate stage fit on the shipped
model's validation scores, and that threshold's test sensitivity and specificity. This benchmark
fits the threshold again on the same model and images with the code as it is now
(`pipeline.referral.evaluate`), and puts both operating points side by side: what a change of
the fitting rule does to the referral of photos the threshold never saw, with no retraining.

  python -m benchmarks.referral --build_dir=build/a1 --build_dir=build/a2 \
      --output_json=referral.json
"""

from typing import List

from absl import app
from absl import flags

from benchmarks import common

FLAGS = flags.FLAGS
EVALUATE = "the evaluate stage"  # A build past it has report.json, labels and model files.


def define_flags() -> None:
  """Defined when run, not on import (see benchmarks/compare.py)."""
  flags.DEFINE_multi_string("build_dir", [], "A finished build with a referral threshold "
                            "(repeatable).")
  flags.DEFINE_string("output_json", "referral.json", "JSON report path.")
  flags.DEFINE_string("output_md", "", "Markdown report path (default: beside the JSON).")


def refit(build_dir: str) -> dict:
  """{"build_dir", "model", "shipped": the build's referral (report.json), "refit": today's}.

  Raises:
    PipelineError: not a finished build with a referral threshold.
  """
  from pipeline import atomic  # pylint: disable=g-import-not-at-top
  from pipeline import evaluate as evaluate_lib  # pylint: disable=g-import-not-at-top
  from pipeline import referral as referral_lib  # pylint: disable=g-import-not-at-top
  from pipeline.config import build_files, model_file_name  # pylint: disable=g-import-not-at-top
  from pipeline.errors import PipelineError  # pylint: disable=g-import-not-at-top
  from pipeline.labels import read_labels  # pylint: disable=g-import-not-at-top
  report_path, labels_path = build_files(build_dir, ["report.json", "labels.txt"], EVALUATE)
  report = atomic.read_json(report_path, "the build's report")
  shipped = report.get("referral")
  if "models" not in report:
    raise PipelineError(f"--build_dir={build_dir}: the build has not finished its evaluate "
                        "stage; finish it (pipeline.build --resume) first")
  if not shipped:
    raise PipelineError(f"--build_dir={build_dir}: the build fit no referral threshold (it had "
                        "no serious classes; see --malignant_classes)")
  variant = shipped["shipped_model"]
  model_path, = build_files(build_dir, [model_file_name(variant)], EVALUATE)
  config, val = common.build_split(build_dir, "val")
  _, test = common.build_split(build_dir, "test")
  labels = list(read_labels(labels_path))
  with open(model_path, "rb") as f:
    model = {variant: f.read()}
  probs = {name: evaluate_lib.predict_models(model, split.pixels(), labels,
                                             config.model.normalization)
           for name, split in (("val", val), ("test", test))}
  today = referral_lib.evaluate(probs["val"], val.labels, probs["test"], test.labels, labels,
                                shipped["classes"], shipped["target_sensitivity"],
                                shipped=variant, seed=config.seed)
  return {"build_dir": build_dir, "model": variant, "shipped": shipped, "refit": today}


def measure(build_dirs: List[str]) -> dict:
  """Raises PipelineError: no builds, or one that is not a finished build with a referral."""
  from pipeline.errors import PipelineError  # pylint: disable=g-import-not-at-top
  if not build_dirs:
    raise PipelineError("give at least one --build_dir=BUILD")
  builds = []
  for build_dir in build_dirs:
    builds.append(refit(build_dir))
    common.progress(f"{build_dir}: done")
  return {"builds": builds}


def markdown(payload: dict) -> List[str]:
  pct = lambda v: f"{100 * v:.1f}%"
  lines = ["Referral threshold of each build as shipped and re-fit by today's rule on the same "
           "model's validation scores; sensitivity and specificity on the test split.", "",
           "| build | model | threshold shipped / re-fit | validation sensitivity | "
           "test sensitivity | test specificity |", "|---|---|---:|---:|---:|---:|"]
  for b in payload["builds"]:
    old, new, m = b["shipped"], b["refit"], b["model"]
    pair = lambda get: f"{get(old)} / {get(new)}"
    lines.append(
        f"| {b['build_dir']} | {m} | {pair(lambda r: format(r['threshold'], '.3f'))} | "
        f"{pair(lambda r: pct(r['validation']['sensitivity']))} of "
        f"{new['validation']['positives']} | "
        f"{pair(lambda r: pct(r['test'][m]['sensitivity']))} | "
        f"{pair(lambda r: pct(r['test'][m]['specificity']))} |")
  return lines


def main(argv: List[str]) -> None:
  common.main("benchmarks.referral", argv, lambda: measure(FLAGS.build_dir), markdown,
              FLAGS.output_json, FLAGS.output_md)


if __name__ == "__main__":
  define_flags()
  app.run(main)
