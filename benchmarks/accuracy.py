r"""Accuracy of TFLite models on a labeled image set, scored by the labels embedded in each.

  # A build's test split, its int8, int8_ptq and float16 models against its float32:
  python -m benchmarks.accuracy --build_dir=build/ham --output_json=acc.json

  # Any models on any labeled set (every image, or one split of a --split_file):
  python -m benchmarks.accuracy --model=build/ham/model_int8.tflite \
      --float_reference=build/ham/model_float32.tflite \
      --data_format=ham10000 --data_dir=D --metadata_csv=C --output_json=acc.json
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
  flags.DEFINE_multi_string("model", [], "A .tflite with metadata, or a build's "
                            "model_float.keras (scored with the labels and normalization its "
                            "build recorded; repeatable).")
  flags.DEFINE_string("float_reference", "", "The model others are compared with (agreement, "
                      "probability difference); added to --model if missing.")
  common.define_data_flags(flags)
  flags.DEFINE_string("split", "test", "With --build_dir or --split_file: which split to score.")
  flags.DEFINE_integer("bootstrap_rounds", 1000, "Bootstrap rounds for 95% intervals (0: off).")
  flags.DEFINE_integer("seed", 0, "Bootstrap seed.")
  flags.DEFINE_string("output_json", "accuracy.json", "JSON report path.")
  flags.DEFINE_string("output_md", "", "Markdown report path (default: beside the JSON).")


def run(models: List[str], float_reference: str, dataset, split: str, bootstrap_rounds: int,
        seed: int, plot_dir: str) -> dict:
  """Scores every model on every image of the set (or of one split).

  Returns:
    {"results": [...], "n": N, "labels": [...], "float_reference": path or None}.
  """
  from benchmarks import scoring as scoring_lib  # pylint: disable=g-import-not-at-top
  from pipeline import metrics  # pylint: disable=g-import-not-at-top
  from pipeline import parity  # pylint: disable=g-import-not-at-top
  from pipeline import report as report_lib  # pylint: disable=g-import-not-at-top
  from pipeline.config import GateConfig  # pylint: disable=g-import-not-at-top

  if float_reference and float_reference not in models:
    models = models + [float_reference]
  scoring = scoring_lib.ScoringSet(models, dataset, [split])
  split = next(iter(scoring.y_true))
  y_true, labels = scoring.y_true[split], scoring.labels
  probs = {path: scoring.probs(path, split) for path in models}
  names = scoring_lib.display_names(models)
  results = []
  for path in models:
    ref = probs[float_reference] if float_reference and path != float_reference else None
    r = metrics.classification_report(y_true, probs[path], labels, reference_probs=ref,
                                      bootstrap_rounds=bootstrap_rounds, seed=seed)
    if ref is not None:  # The parity gate's paired figures and its default rule's verdict.
      r["paired"] = parity.paired_comparison(y_true, ref, probs[path], labels, seed=seed)
      r["gate_default_rule"] = parity.verdict(r["paired"], GateConfig(), names[path]).passed
      r["layer_error"] = _layer_error(path, float_reference, scoring, split, plot_dir)
    r["model"] = path
    r["name"] = names[path]
    r["size_bytes"] = os.path.getsize(path)
    if plot_dir:
      stem = os.path.splitext(names[path])[0].replace(os.sep, "_")
      png = os.path.join(plot_dir, f"confusion_{stem}.png")
      report_lib.plot_confusion_matrices({names[path]: r["confusion_matrix"]}, labels, png)
      r["confusion_matrix_png"] = png
    results.append(r)
  return {"results": results, "n": int(len(y_true)), "labels": labels,
          "float_reference": float_reference or None, "split": split}


def _layer_error(path: str, reference: str, scoring, split: str, plot_dir: str):
  """The per-layer map of an int8 .tflite against a float .tflite reference on the first
  images (pipeline/layer_error.py), or None where no layer matches (float16, 8-view models)."""
  from pipeline import layer_error  # pylint: disable=g-import-not-at-top
  if not (path.endswith(".tflite") and reference.endswith(".tflite")):
    return None
  runner = scoring.runners[path]
  with open(path, "rb") as f, open(reference, "rb") as g:
    error_map = layer_error.layer_map(
        f.read(), g.read(), scoring.pixels[split][runner.image_size][:layer_error.IMAGES],
        runner.normalization)
  if not error_map["layers"]:
    return None
  if plot_dir:
    error_map["png"] = os.path.join(plot_dir, "layer_error_" + os.path.splitext(
        os.path.basename(path))[0] + ".png")
    layer_error.plot(error_map, error_map["png"])
  return error_map


def markdown(payload: dict) -> List[str]:
  """Summary and per-class tables in Markdown."""
  from pipeline import report as report_lib  # pylint: disable=g-import-not-at-top
  models = {r["name"]: r for r in payload["results"]}
  lines = ["# Accuracy (TFLite through the LiteRT interpreter; .keras through Keras)", "",
           f"{payload['n']} images ({payload['split']}); labels mapped by name from each "
           "model's metadata (a .keras: its build's labels.txt)." +
           (f" Reference: `{os.path.basename(payload['float_reference'])}`."
            if payload["float_reference"] else ""), ""]
  lines += report_lib.models_table(models, payload["labels"])
  lines += ["", "| model | accuracy 95% CI | balanced acc. 95% CI | top-3 | mean abs prob diff | "
            "top-1 flips (reference margin: median / max) |", "|---|---:|---:|---:|---:|---:|"]
  for name, r in models.items():
    ci = r.get("ci95", {})
    fmt = lambda c: f"{100 * c[0]:.1f}-{100 * c[1]:.1f}%" if c else "n/a"
    diff = r.get("mean_abs_prob_diff")
    flips = ("n/a" if diff is None else f"{r['disagreements']}" + (
        f" ({r['disagreement_median_reference_margin']:.3f} / "
        f"{r['disagreement_max_reference_margin']:.3f})" if r["disagreements"] else ""))
    lines.append(f"| {name} | {fmt(ci.get('accuracy'))} | {fmt(ci.get('balanced_accuracy'))} | "
                 f"{100 * r['top3_accuracy']:.1f}% | {'n/a' if diff is None else f'{diff:.4f}'} | "
                 f"{flips} |")
  paired = {name: r["paired"] for name, r in models.items() if "paired" in r}
  if paired:
    lines += ["", "Paired with the reference on the same images (the build's parity gate):", "",
              "| model | reference alone right | model alone right | McNemar p (one-sided: "
              "model worse) | balanced-acc. drop (paired 95% CI) | gate, default rule |",
              "|---|---:|---:|---:|---:|---|"]
    for name, p in paired.items():
      m, (lo, hi) = p["mcnemar"], p["balanced_accuracy_drop_ci95"]
      lines.append(f"| {name} | {m['reference_only_right']} | {m['candidate_only_right']} | "
                   f"{m['p_two_sided']:.3g} ({m['p_candidate_worse']:.3g}) | "
                   f"{100 * p['balanced_accuracy_drop']:+.2f} ({100 * lo:+.2f} to {100 * hi:+.2f}) "
                   f"| {'passes' if models[name]['gate_default_rule'] else 'FAILS'} |")
  for name, r in models.items():
    if r.get("layer_error"):
      lines += ["", f"{name}, layer by layer against the reference "
                f"({os.path.basename(r['layer_error'].get('png', ''))}):"]
      lines += report_lib.layer_error_table(r["layer_error"])
  lines += ["", "A top-1 flip is an image whose top-1 differs from the reference's; its margin is "
            "the reference's top-1 minus top-2 probability there (near 0: a near-tie that any "
            "rounding can flip; large: a real disagreement)."]
  lines += ["", "Per-class precision / recall / F1:", "",
            "| class | " + " | ".join(models) + " |", "|---|" + "---|" * len(models)]
  for label in payload["labels"]:
    lines.append(f"| {label} | " + " | ".join(
        f"{r['per_class_precision'][label]:.2f} / {r['per_class_recall'][label]:.2f} / "
        f"{r['per_class_f1'][label]:.2f}" for r in models.values()) + " |")
  return lines


def measure_from_flags() -> dict:
  from pipeline.errors import PipelineError  # pylint: disable=g-import-not-at-top
  dataset = common.dataset_from_flags(FLAGS)
  models, reference = FLAGS.model, FLAGS.float_reference
  if FLAGS.build_dir:  # Default: the build's int8 variants and float16 against its float32.
    models = models or common.exported_models(FLAGS.build_dir)
    reference = reference or next(iter(common.build_models(FLAGS.build_dir, ("float32",))), "")
  if not models:
    raise PipelineError("give at least one --model=PATH.tflite, or --build_dir")
  plot_dir = os.path.dirname(os.path.abspath(FLAGS.output_json))
  os.makedirs(plot_dir, exist_ok=True)
  return run(models, reference, dataset, FLAGS.split, FLAGS.bootstrap_rounds, FLAGS.seed,
             plot_dir)


def main(argv: List[str]) -> None:
  common.main("benchmarks.accuracy", argv, measure_from_flags, markdown, FLAGS.output_json,
              FLAGS.output_md)


if __name__ == "__main__":
  define_flags()
  app.run(main)
