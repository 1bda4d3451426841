r"""Accuracy of TFLite models on a labeled image set, scored by the labels embedded in each.

  python -m benchmarks.accuracy --model=build/ham/model_int8.tflite \
      --model=build/ham/model_float32.tflite --float_reference=build/ham/model_float32.tflite \
      --data_format=ham10000 --data_dir=D --metadata_csv=C --output_json=acc.json
"""

import os
import sys
import tempfile
from typing import Dict, List

from absl import app
from absl import logging
from absl import flags

from pipeline.config import DATA_FORMATS

flags.DEFINE_multi_string("model", [], "A .tflite with metadata, or a build's model_float.keras "
                          "(scored with the labels and normalization its build recorded; repeatable).")
flags.DEFINE_string("float_reference", "", "The model others are compared with (agreement, "
                    "probability difference); added to --model if missing.")
flags.DEFINE_enum("data_format", "ham10000", DATA_FORMATS, "Dataset layout (as pipeline.build).")
flags.DEFINE_string("data_dir", "", "Image root.")
flags.DEFINE_string("metadata_csv", "", "Metadata or pixel CSV.")
flags.DEFINE_string("hmnist_labels", "", "hmnist_csv label table (as pipeline.build).")
flags.DEFINE_string("split_file", "", "A build's splits.csv, to score one split only.")
flags.DEFINE_string("split", "test", "With --split_file: which split to score.")
flags.DEFINE_integer("bootstrap_rounds", 1000, "Bootstrap rounds for 95% intervals (0: off).")
flags.DEFINE_integer("seed", 0, "Bootstrap seed.")
flags.DEFINE_string("output_json", "accuracy.json", "JSON report path.")
flags.DEFINE_string("output_md", "", "Markdown report path (default: beside the JSON).")
FLAGS = flags.FLAGS


def run(models: List[str], float_reference: str, data_config, split_file: str, split: str,
        bootstrap_rounds: int, seed: int, plot_dir: str) -> dict:
  """Scores every model on every image of the set (or of one split).

  Each model's outputs are mapped to class names with the labels embedded in it, so a
  model with a wrong label order scores as badly as it would in an app.

  Returns:
    {"results": [...], "n": N, "labels": [...], "float_reference": path or None}.
  """
  import dataclasses  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from pipeline import data as data_lib  # pylint: disable=g-import-not-at-top
  from pipeline import metrics  # pylint: disable=g-import-not-at-top
  from pipeline import report as report_lib  # pylint: disable=g-import-not-at-top
  from pipeline.errors import PipelineError  # pylint: disable=g-import-not-at-top
  from pipeline.runner import LiteRunner, load_model_file  # pylint: disable=g-import-not-at-top

  if float_reference and float_reference not in models:
    models = models + [float_reference]
  runners: Dict[str, LiteRunner] = {}
  model_labels: Dict[str, list] = {}
  for path in models:
    runners[path], meta = load_model_file(path)
    model_labels[path] = meta["labels"]
  labels = sorted(set(model_labels[models[0]]))
  images_by_size = {}
  with tempfile.TemporaryDirectory() as work:
    for size in sorted({r.image_size for r in runners.values()}):
      cfg = dataclasses.replace(data_config, image_size=size)
      keys, names, pixels, _ = data_lib.load_labeled_images(cfg, work, only_split=split if
                                                            split_file else "",
                                                            split_file=split_file)
      images_by_size[size] = (keys, names, pixels)
  keys, names, _ = next(iter(images_by_size.values()))
  unknown = sorted(set(names) - set(labels))
  if unknown:
    raise PipelineError(f"the data has classes {unknown} that the model "
                        f"{models[0]} does not know ({labels})")
  y_true = np.array([labels.index(n) for n in names])
  probs = {}
  for path, runner in runners.items():
    if sorted(model_labels[path]) != labels:
      raise PipelineError(f"{path}: its labels {model_labels[path]} differ from {models[0]}'s")
    p = runner.predict(images_by_size[runner.image_size][2])
    probs[path] = p[:, [model_labels[path].index(l) for l in labels]]
  names = display_names(models)
  results = []
  for path in models:
    ref = probs[float_reference] if float_reference and path != float_reference else None
    r = metrics.classification_report(y_true, probs[path], labels, reference_probs=ref,
                                      bootstrap_rounds=bootstrap_rounds, seed=seed)
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
          "float_reference": float_reference or None,
          "split": split if split_file else "all"}


def display_names(paths: List[str]) -> Dict[str, str]:
  """Short, unique names for report rows: the file name, or parent/file name where two
  models share a file name (model_float.keras of several builds)."""
  base = [os.path.basename(p) for p in paths]
  return {p: b if base.count(b) == 1 else os.path.join(
      os.path.basename(os.path.dirname(os.path.abspath(p))), b) for p, b in zip(paths, base)}


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
  lines += ["", "| model | accuracy 95% CI | balanced acc. 95% CI | top-3 | mean abs prob diff |",
            "|---|---:|---:|---:|---:|"]
  for name, r in models.items():
    ci = r.get("ci95", {})
    fmt = lambda c: f"{100 * c[0]:.1f}-{100 * c[1]:.1f}%" if c else "n/a"
    diff = r.get("mean_abs_prob_diff")
    lines.append(f"| {name} | {fmt(ci.get('accuracy'))} | {fmt(ci.get('balanced_accuracy'))} | "
                 f"{100 * r['top3_accuracy']:.1f}% | {'n/a' if diff is None else f'{diff:.4f}'} |")
  lines += ["", "Per-class precision / recall / F1:", "",
            "| class | " + " | ".join(models) + " |", "|---|" + "---|" * len(models)]
  for label in payload["labels"]:
    lines.append(f"| {label} | " + " | ".join(
        f"{r['per_class_precision'][label]:.2f} / {r['per_class_recall'][label]:.2f} / "
        f"{r['per_class_f1'][label]:.2f}" for r in models.values()) + " |")
  return lines


def main(argv: List[str]) -> None:
  logging.set_verbosity(logging.WARNING)  # TensorFlow's checkpoint INFO lines drown progress.
  from benchmarks import common  # pylint: disable=g-import-not-at-top
  from pipeline.config import DataConfig  # pylint: disable=g-import-not-at-top
  from pipeline.errors import PipelineError  # pylint: disable=g-import-not-at-top
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  try:
    if not FLAGS.model:
      raise PipelineError("give at least one --model=PATH.tflite")
    data_config = DataConfig(data_format=FLAGS.data_format, data_dir=FLAGS.data_dir,
                             metadata_csv=FLAGS.metadata_csv, hmnist_labels=FLAGS.hmnist_labels)
    data_config.validate()
    plot_dir = os.path.dirname(os.path.abspath(FLAGS.output_json))
    os.makedirs(plot_dir, exist_ok=True)
    payload = run(FLAGS.model, FLAGS.float_reference, data_config, FLAGS.split_file, FLAGS.split,
                  FLAGS.bootstrap_rounds, FLAGS.seed, plot_dir)
    common.write_outputs(payload, markdown(payload), FLAGS.output_json, FLAGS.output_md)
    print("\n".join(markdown(payload)))
  except PipelineError as e:
    sys.exit(f"benchmarks.accuracy: error: {e}")


if __name__ == "__main__":
  app.run(main)
