"""Stage `data`: load and split the dataset once; write labels.txt, splits.csv and
data_report.json (the one label source for every later stage)."""

import dataclasses
import os

from pipeline import atomic
from pipeline import data as data_lib
from pipeline import labels as labels_lib
from pipeline import synthetic
from pipeline.config import BuildConfig, TrainConfig
from pipeline.data import splits as splits_lib
from pipeline.errors import PipelineError
from pipeline.stages.state import BuildState
from pipeline.train import inputs

SYNTHETIC_DIR = "synthetic_data"


def run(config: BuildConfig, state: BuildState) -> BuildState:
  """Loads the dataset (reusing splits.csv on --resume) and writes its three files.

  Raises:
    PipelineError: unusable input; on --resume, labels that differ from the interrupted
      build's; serious classes (--malignant_classes) that are not labels.
  """
  options = state.options
  synthetic_root = ""
  if config.data.data_format == "synthetic":
    synthetic_root = state.path(SYNTHETIC_DIR)
    synthetic.write_dataset(synthetic_root, config.data.synthetic_classes,
                            config.data.synthetic_per_class, config.data.image_size, config.seed)
  previous_labels = split_file = None
  if options.resume and os.path.exists(state.path(labels_lib.FILE_NAME)):
    previous_labels = labels_lib.read_labels(state.path(labels_lib.FILE_NAME))
  if options.resume and os.path.exists(state.path(splits_lib.FILE_NAME)):
    split_file = state.path(splits_lib.FILE_NAME)
  try:
    bundle = data_lib.load(config.data, config.seed, split_file=split_file or "",
                           synthetic_root=synthetic_root)
  except data_lib.NoUsableImages as e:  # Keep the full list of what was skipped, and why.
    atomic.write_json(state.path("data_report.json"),
                      {"skipped": e.notes.skipped, "converted": e.notes.converted,
                       "warnings": e.notes.warnings})
    raise PipelineError(f"{e}; every skipped input is listed in "
                        f"{state.path('data_report.json')}") from e
  if previous_labels is not None and previous_labels != bundle.labels:
    raise PipelineError(f"--resume: the data now gives labels {list(bundle.labels)}, the "
                        f"interrupted build had {list(previous_labels)}; the dataset changed, "
                        "start a fresh build")
  config.referral.check_labels(config.data.data_format, bundle.labels)  # Before training.
  data_report = summary(config.data.data_format, bundle, config.train)
  labels_lib.write_labels(state.path(labels_lib.FILE_NAME), bundle.labels)
  atomic.write_text(state.path(splits_lib.FILE_NAME), splits_lib.to_csv(bundle))
  atomic.write_json(state.path("data_report.json"), data_report)
  counts = ", ".join(f"{k} {len(s)}" for k, s in bundle.splits.items())
  unused = ""
  if bundle.unused:
    why = (f"data.train_fraction={config.data.train_fraction:g}"
           if config.data.train_fraction < 1 else "the split file")
    unused = f", {len(bundle.unused)} images left out by {why}"
  state.log(f"data: {sum(len(s) for s in bundle.splits.values())} images ({counts}{unused}), "
            f"{len(bundle.labels)} labels, {bundle.notes.skipped_summary()}, "
            f"{len(bundle.notes.converted)} converted")
  for warning in bundle.notes.warnings:
    state.log(f"data: warning: {warning}")
  return dataclasses.replace(state, bundle=bundle, data_report=data_report)


def summary(data_format: str, bundle: data_lib.DataBundle, train: TrainConfig) -> dict:
  """data_report.json: counts per split and class, the class balance of the transfer and
  fine-tune phases (with their loss weights), and every skipped or converted input."""
  counts = bundle.train_counts()
  named = lambda weights: ({bundle.labels[i]: round(w, 4) for i, w in weights.items()}
                           if weights else None)
  return {
      "data_format": data_format,
      "image_size": bundle.image_size,
      "labels": list(bundle.labels),
      "counts": bundle.counts(),
      "totals": {name: len(split) for name, split in bundle.splits.items()},
      "unused": len(bundle.unused),  # Training images left out (--train_fraction).
      "class_balance": train.class_balance,  # The transfer and QAT phases.
      "class_weights": named(inputs.class_weights(counts, train.class_balance)),
      "finetune_class_balance": train.finetune_class_balance,
      "finetune_class_weights": named(inputs.class_weights(counts,
                                                           train.finetune_class_balance)),
      "class_priors": {label: round(float(p), 4)
                       for label, p in zip(bundle.labels, inputs.class_priors(counts))},
      "cached_in_memory": not bundle.streamed,
      "skipped": bundle.notes.skipped,
      "converted": bundle.notes.converted,
      "warnings": bundle.notes.warnings,
  }
