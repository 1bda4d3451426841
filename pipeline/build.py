r"""Builds an int8 TFLite classifier with metadata from labeled images, in one command.

Stages, in order: data, transfer, finetune, crt, qat, export, metadata, evaluate, gate,
assets (pipeline/stages/__init__.py says what each makes).

  python -m pipeline.build --data_format=ham10000 \
      --data_dir=../shared/data/ham10000_dev/images \
      --metadata_csv=../shared/data/ham10000_dev/HAM10000_metadata.csv \
      --weights=../shared/weights/mobilenet_v2_1.0_imagenet_no_top.h5 --output_dir=build/ham

This file is the only one in `pipeline/` that reads flags: everything else takes a
BuildConfig and RunOptions (see pipeline/config/), which is written to
OUTPUT_DIR/config.json and, as flags, to OUTPUT_DIR/flags.txt so that
`--flagfile=OUTPUT_DIR/flags.txt` repeats the build.
"""

import os
import sys
from typing import List, Tuple

from absl import app
from absl import logging
from absl import flags

from pipeline import config as config_lib
from pipeline.config import (BuildConfig, DataConfig, ExportConfig, GateConfig, MetadataConfig,
                             ModelConfig, PhaseConfig, ReferralConfig, RunOptions,
                             TrainConfig)
from pipeline.errors import PipelineError

_D = BuildConfig()
_R = RunOptions(output_dir="")
_DEFINED: List[str] = []


def _define(kind: str, name: str, default, *args, **kwargs) -> None:
  """flags.DEFINE_<kind>, remembering the name so flags.txt lists only the build's flags."""
  getattr(flags, f"DEFINE_{kind}")(name, default, *args, **kwargs)
  _DEFINED.append(name)


# Data.
_define("enum", "data_format", "synthetic", config_lib.DATA_FORMATS,
        "Input layout: ham10000 (metadata CSV + images in one or more folders), folders "
        "(ROOT/CLASS/*.jpg, or ROOT/train|test/CLASS), hmnist_csv (28x28 pixel CSV), synthetic "
        "(generated demo set).")
_define("string", "data_dir", "", "Image root. For ham10000, several folders may be given "
        "comma-separated (e.g. HAM10000_images_part_1,HAM10000_images_part_2).")
_define("string", "metadata_csv", "", "HAM10000_metadata.csv (ham10000) or "
        "hmnist_28_28_RGB.csv (hmnist_csv).")
_define("integer", "image_size", _D.data.image_size, "Model input height and width in pixels.")
_define("float", "val_fraction", _D.data.val_fraction, "Share of each class for validation.")
_define("float", "test_fraction", _D.data.test_fraction,
        "Share of each class for test (unless the dataset ships a test split).")
_define("float", "train_fraction", _D.data.train_fraction, "Train on this share of each "
        "class's training lesions (at least one), drawn with --seed; validation and test stay "
        "whole, the rest is 'unused' in splits.csv. For learning curves "
        "(benchmarks.learning_curve): what would more data give?")
_define("string", "split_file", "", "Reuse a saved splits.csv instead of splitting anew.")
_define("bool", "strict", _D.data.strict, "Fail on any bad input instead of skipping it.")
_define("string", "hmnist_labels", "", "hmnist_csv label table CODE:NAME,... (default: "
        "0:akiec,1:bcc,2:bkl,3:df,4:nv,5:vasc,6:mel).")
_define("enum", "class_weight", _D.train.class_weight, config_lib.CLASS_WEIGHTS,
        "How training balances classes: balanced = loss weights n / (classes * n_class); "
        "logit_adjusted = no weights, the loss adds log class priors to the logits (the "
        "model's outputs then favour no class by its frequency); none (the default) = neither: "
        "the crt stage balances the classifier (with --nocrt, give balanced here and to "
        "--finetune_class_weight); sqrt = loss weights proportional to 1 / sqrt(n_class), "
        "averaging 1 over the images. Transfer and QAT use it; fine-tuning has its own.")
_define("string", "finetune_class_weight", _D.train.finetune_class_weight,
        "The fine-tune phase's class balance: one of --class_weight's choices, or empty "
        "(--finetune_class_weight=) for --class_weight's. sqrt (the default) beat none on "
        "paired fine-tune re-runs and whole builds (BUILD.md).")
_define("bool", "oversample", _D.train.oversample,
        "Oversample rare classes to the largest class's count (replaces class weights).")
_define("bool", "augment", _D.train.augment,
        "Random flips, rotations, zoom, brightness and contrast while training.")
_define("float", "cache_max_gb", _D.data.cache_max_gb,
        "Keep decoded images in memory up to this size; stream from disk beyond it.")
_define("integer", "synthetic_classes", _D.data.synthetic_classes, "Classes of the synthetic set.")
_define("integer", "synthetic_per_class", _D.data.synthetic_per_class,
        "Images per class of the synthetic set.")
# Model.
_define("string", "weights", _D.model.weights, "Backbone weights: imagenet (downloads), none "
        "(random init), or the path of a MobileNetV2 no-top .h5.")
_define("float", "alpha", _D.model.alpha, "MobileNetV2 width multiplier.")
_define("float", "dropout", _D.model.dropout, "Dropout before the classifier.")
# Training.
_define("integer", "transfer_epochs", _D.train.transfer.epochs, "Head-only epochs.")
_define("float", "transfer_lr", _D.train.transfer.learning_rate, "Head-only learning rate.")
_define("enum", "transfer_mode", _D.train.transfer_mode, config_lib.TRANSFER_MODES,
        "cached_features: run the frozen backbone once per image and train the head on the "
        "features; end_to_end: train through the backbone with augmentation.")
_define("integer", "finetune_epochs", _D.train.finetune.epochs, "Fine-tuning epochs.")
_define("float", "finetune_lr", _D.train.finetune.learning_rate, "Fine-tuning peak learning rate.")
_define("float", "finetune_weight_decay", _D.train.finetune.weight_decay,
        "Decoupled weight decay in fine-tuning (AdamW; 0 = Adam): every step shrinks each "
        "kernel by learning rate x this.")
_define("integer", "finetune_layers", _D.train.finetune_layers,
        "Top backbone layers to unfreeze; block boundaries: 100 = from block_6, 56 = block_11, "
        "47 = block_12, 38 = block_13.")
_define("float", "warmup_epochs", _D.train.finetune.warmup_epochs,
        "Linear warm-up before cosine decay in fine-tuning.")
_define("float", "label_smoothing", _D.train.finetune.label_smoothing,
        "Label smoothing in fine-tuning and QAT.")
_define("enum", "finetune_keep", _D.train.finetune_keep, config_lib.KEEP_EPOCHS,
        "Fine-tune epoch the model keeps: last (the schedule's end) or best_val (highest "
        "validation balanced accuracy).")
_define("integer", "finetune_runs", _D.train.finetune_runs,
        "Fine-tune this many times from the transfer weights, each with its own data order, "
        "and keep the mean of their weights (a model soup; each run costs a whole fine-tune).")
_define("bool", "crt", _D.train.crt, "After fine-tuning, re-train the classifier on the frozen "
        "backbone's features, class-balanced (cRT).")
_define("float", "crt_c", _D.train.crt_c, "Inverse L2 strength of the cRT classifier.")
_define("integer", "qat_epochs", _D.train.qat.epochs, "Quantization-aware training epochs.")
_define("float", "qat_lr", _D.train.qat.learning_rate, "QAT learning rate.")
_define("enum", "qat_target", _D.train.qat_target, config_lib.QAT_TARGETS,
        "What QAT learns: float_model = the fine-tuned float model's probabilities on the "
        "same augmented images (distillation, for int8-vs-float parity); labels = the labels.")
_define("integer", "batch_size", _D.train.batch_size, "Global batch size.")
_define("enum", "strategy", _D.train.strategy, config_lib.STRATEGIES,
        "tf.distribute strategy; multi_worker reads the cluster from TF_CONFIG.")
# Export and metadata.
_define("enum", "io_dtype", _D.export.io_dtype, config_lib.IO_DTYPES,
        "Input/output type of the int8 variants; phone APIs take uint8.")
_define("list", "variants", list(_D.export.variants),
        "TFLite variants to write: int8 (QAT, shipped), int8_ptq, float16, float32.")
_define("integer", "calibration_images", _D.export.calibration_images,
        "Real training images for int8 calibration.")
_define("string", "model_name", "", "Metadata name (default from metadata/defaults.json).")
_define("string", "model_description", "", "Metadata description (default from "
        "metadata/defaults.json; always ends with 'Not a diagnostic device.').")
_define("string", "model_version", "", "Metadata version.")
_define("string", "model_author", "", "Metadata author.")
_define("string", "model_license", "", "Metadata license.")
_define("string", "display_names", "", "JSON file {label: {display_name: ...}}; default: "
        "metadata/classes_*.json, else the label itself.")
# Gate and run control.
_define("bool", "gate", _D.gate.enabled, "Refuse to ship an int8 model that fails the parity gate.")
_define("float", "gate_min_agreement", _D.gate.min_top1_agreement,
        "Fail when int8-vs-float32 top-1 agreement on the test split is below this floor "
        "(good models agree on 94-98% of HAM10000 test images; a broken one far less).")
_define("float", "gate_max_bacc_drop", _D.gate.max_balanced_accuracy_drop,
        "Fail when even the low end of the paired bootstrap 95% interval of int8's "
        "balanced-accuracy drop is above this (0.01 = one point).")
_define("float", "gate_mcnemar_alpha", _D.gate.mcnemar_alpha,
        "Fail when an exact McNemar test finds int8 wrong alone significantly more often than "
        "float32 (one-sided p below this).")
_define("float", "gate_max_flip_margin", _D.gate.max_flip_margin,
        "Fail when int8 turns a right float32 prediction with at least this top-1 margin "
        "(top-1 minus top-2 probability) into a wrong one it is sure of (--gate_min_wrong_lead).")
_define("float", "gate_min_wrong_lead", _D.gate.min_wrong_lead,
        "With --gate_max_flip_margin: int8 is sure of its wrong answer when its top-1 is at "
        "least this above its score of the true class (a flip to a near-tie is rounding).")
_define("integer", "gate_bootstrap_rounds", _D.gate.bootstrap_rounds,
        "Bootstrap rounds for the gate's intervals and the referral figures.")
_define("list", "malignant_classes", None,
        "Serious classes for the referral threshold (refer when their summed probability "
        "reaches it). Default: mel,bcc,akiec for ham10000 and hmnist_csv, none otherwise; "
        "--malignant_classes= turns it off.")
_define("float", "referral_sensitivity", _D.referral.sensitivity,
        "Probability that the referral threshold refers a new serious case (fit on the "
        "validation split's serious cases at their split-conformal rank).")
_define("string", "output_dir", "", "Where the build writes everything.")
_define("string", "assets_dir", _R.assets_dir, "Where the drop-in app assets go (default "
        "OUTPUT_DIR/android_assets; make ham10000 writes the repository's android_assets/).")
_define("integer", "seed", _D.seed, "Seed for splits, shuffling and initialization.")
_define("bool", "deterministic", _D.deterministic,
        "Enable TensorFlow op determinism: two builds with the same seed train bit-identical "
        "models (for comparing changes); without it only the split and labels repeat.")
_define("enum", "stop_after", _R.stop_after, config_lib.STAGES,
        "Run the stages up to and including this one.")
_define("bool", "resume", _R.resume, "Continue a killed build: finished stages are reused, "
        "the interrupted phase continues from its last epoch.")
_define("enum", "rerun_from", None, config_lib.STAGES,
        "Redo this stage and every later one of the build in --output_dir, reusing the earlier "
        "stages (implies --resume); settings only this stage or later ones read may change, "
        "e.g. --rerun_from=qat --qat_epochs=3. Copy the directory first to keep the original.")
_define("bool", "overwrite", _R.overwrite, "Replace the build already in --output_dir (its "
        "files are deleted first); without it a fresh build refuses a folder that holds one.")

# Per invocation, so not in flags.txt.
flags.DEFINE_bool("verbose", False, "Show TensorFlow's and the TFLite converter's own log lines "
                  "(hidden by default unless the call they come from fails).")

FLAGS = flags.FLAGS


def config_from_flags(f: flags.FlagValues) -> Tuple[BuildConfig, RunOptions]:
  """The validated recipe and run options of parsed flags."""
  smoothing = f.label_smoothing
  config = BuildConfig(
      seed=f.seed, deterministic=f.deterministic,
      data=DataConfig(
          data_format=f.data_format, data_dir=f.data_dir, metadata_csv=f.metadata_csv,
          image_size=f.image_size, val_fraction=f.val_fraction, test_fraction=f.test_fraction,
          train_fraction=f.train_fraction, split_file=f.split_file, strict=f.strict,
          hmnist_labels=f.hmnist_labels,
          cache_max_gb=f.cache_max_gb, synthetic_classes=f.synthetic_classes,
          synthetic_per_class=f.synthetic_per_class),
      model=ModelConfig(weights=f.weights, alpha=f.alpha, dropout=f.dropout),
      train=TrainConfig(
          transfer=PhaseConfig(epochs=f.transfer_epochs, learning_rate=f.transfer_lr),
          finetune=PhaseConfig(epochs=f.finetune_epochs, learning_rate=f.finetune_lr,
                               warmup_epochs=f.warmup_epochs, label_smoothing=smoothing,
                               weight_decay=f.finetune_weight_decay),
          qat=PhaseConfig(epochs=f.qat_epochs, learning_rate=f.qat_lr, label_smoothing=smoothing),
          transfer_mode=f.transfer_mode, qat_target=f.qat_target,
          finetune_layers=f.finetune_layers, finetune_keep=f.finetune_keep,
          finetune_runs=f.finetune_runs, crt=f.crt,
          crt_c=f.crt_c, batch_size=f.batch_size, strategy=f.strategy,
          class_weight=f.class_weight, finetune_class_weight=f.finetune_class_weight,
          oversample=f.oversample, augment=f.augment),
      export=ExportConfig(io_dtype=f.io_dtype, variants=tuple(f.variants),
                          calibration_images=f.calibration_images),
      metadata=MetadataConfig(name=f.model_name, description=f.model_description,
                              version=f.model_version, author=f.model_author,
                              license=f.model_license, display_names=f.display_names),
      gate=GateConfig(min_top1_agreement=f.gate_min_agreement,
                      max_balanced_accuracy_drop=f.gate_max_bacc_drop,
                      mcnemar_alpha=f.gate_mcnemar_alpha, max_flip_margin=f.gate_max_flip_margin,
                      min_wrong_lead=f.gate_min_wrong_lead,
                      bootstrap_rounds=f.gate_bootstrap_rounds, enabled=f.gate),
      referral=ReferralConfig(
          malignant_classes=None if f.malignant_classes is None else tuple(f.malignant_classes),
          sensitivity=f.referral_sensitivity),
  )
  options = RunOptions(output_dir=f.output_dir, assets_dir=f.assets_dir, stop_after=f.stop_after,
                       resume=f.resume, rerun_from=f.rerun_from or "", overwrite=f.overwrite)
  return config.validate(), options.validate()


def flagfile_text(f: flags.FlagValues) -> str:
  """The build's flags in --flagfile form (without --resume, --rerun_from and --overwrite,
  which are per invocation)."""
  lines = [f[name].serialize() for name in _DEFINED 
           if name not in ("resume", "rerun_from", "overwrite")]
  # A list flag left to its dataset-dependent default (None) serializes as "".
  return "\n".join(line for line in lines if line) + "\n"


def main(argv: List[str]) -> None:
  logging.set_verbosity(logging.WARNING)  # TensorFlow's checkpoint INFO lines drown progress.
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  try:
    if FLAGS.verbose:
      os.environ["PIPELINE_VERBOSE"] = "1"  # Read by pipeline.quiet.
    config, options = config_from_flags(FLAGS)
    from pipeline import stages  # pylint: disable=g-import-not-at-top  (imports TensorFlow)
    stages.run(config, options, flags_text=flagfile_text(FLAGS))
  except PipelineError as e:
    sys.exit(f"pipeline.build: error: {e}")
  except OSError as e:  # An output path that cannot be written: /proc/x, under a file, full disk.
    where = e.filename or FLAGS.output_dir
    sys.exit(f"pipeline.build: error: {where}: {e.strerror or e}; choose a writable "
             "--output_dir (and --assets_dir)")
  except KeyboardInterrupt:
    sys.exit("pipeline.build: interrupted; rerun with --resume to continue")


def entry_point() -> None:
  """Console script `tflite-build`."""
  app.run(main)


if __name__ == "__main__":
  entry_point()
