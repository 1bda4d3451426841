r"""Distillation: does a model that learns its own 8-view mean beat the shipped one?

For each --build_dir (a finished build that kept its checkpoints):
- the teacher is the build's fine-tuned model (the fine-tune epoch the build kept, with its
  fine-tuned classifier) averaged over the 8 dihedral views of each un-augmented training
  image (`pipeline.train.distill`);
- the student is the same architecture fine-tuned on augmented training images against
  --label_weight x the smoothed labels + the rest x the teacher, from the transfer stage's
  weights (--init=transfer: born-again) or from the fine-tuned ones (--init=finetuned: the
  fine-tuned model continues), with the build's layers, batch and augmentation;
- then, when the build re-fit its classifier (cRT), the student's is re-fit the same way.
The student's fine-tune can also vary the build's recipe: --weight_decay (AdamW),
--low_res_epochs/--low_res_size (progressive resizing), --finetune_layers (how much of the
backbone trains), --label_smoothing and --reweight/--reweight_epochs (class weights, on the
last epochs only: deferred re-weighting); with --label_weight=1 there is no
teacher, so the student is a plain re-run of fine-tuning under that recipe, paired on the
build's transfer weights, split and classifier re-fit.
Balanced accuracy of the shipped model_float.keras and of the student on the validation
split, and on the test split with one view and with the mean over the 8 dihedral views;
over several builds, mean (min-max) and the paired change against shipped. Nothing is fit on
the test split. Costs one fine-tune of --epochs per build (plus the teacher's 8 passes over
the training split, and the shipped model's scores, cached in --work_dir).

  python -m benchmarks.distill --build_dir=build/ham1 --build_dir=build/ham2 \
      --build_dir=build/ham3 --init=transfer --epochs=10 --output_json=distill.json
"""

import dataclasses
import os
import time
from typing import List, Optional

import numpy as np
from absl import app
from absl import flags

from benchmarks import common
from benchmarks import distill_report
from benchmarks import readout

FLAGS = flags.FLAGS
INITS = ("transfer", "finetuned")


def define_flags() -> None:
  """Defined when run, not on import (see benchmarks.readout)."""
  from pipeline.config import TrainConfig  # pylint: disable=g-import-not-at-top
  flags.DEFINE_multi_string("build_dir", [], "A finished build's output directory (repeatable).")
  flags.DEFINE_enum("init", "transfer", INITS, "The student's start: the transfer stage's "
                    "weights (born-again) or the fine-tuned model's.")
  flags.DEFINE_integer("epochs", 10, "The student's fine-tune epochs.", lower_bound=1)
  flags.DEFINE_float("learning_rate", TrainConfig.finetune.learning_rate,
                     "Peak learning rate (cosine decay after the warm-up).", lower_bound=1e-9)
  flags.DEFINE_float("warmup_epochs", 1.0, "Linear warm-up epochs.", lower_bound=0.0)
  flags.DEFINE_float("label_weight", 0.5, "Share of the smoothed labels in the target (the "
                     "rest is the teacher's probabilities; 1 = no teacher: a plain fine-tune, "
                     "e.g. to measure --weight_decay alone).", lower_bound=0.0, upper_bound=1.0)
  flags.DEFINE_float("weight_decay", 0.0, "Decoupled weight decay of the student's fine-tune "
                     "(AdamW; 0 = Adam, as the build).", lower_bound=0.0)
  flags.DEFINE_integer("low_res_epochs", 0, "Progressive resizing: this many epochs on images "
                       "resized to --low_res_size before the --epochs at full size, under one "
                       "schedule (0: none).", lower_bound=0)
  flags.DEFINE_integer("low_res_size", 160, "The low resolution of --low_res_epochs, in pixels.",
                       lower_bound=32)
  flags.DEFINE_integer("finetune_layers", None, "Top backbone layers the student trains "
                       "(default: the build's --finetune_layers; 154 = the whole MobileNetV2).",
                       lower_bound=0)
  flags.DEFINE_float("label_smoothing", None, "Label smoothing of the student's target "
                     "(default: the build's).", lower_bound=0.0, upper_bound=0.99)
  flags.DEFINE_float("color_jitter", 0.0, "Colour jitter of the student's augmentation: "
                     "saturation x U(1 - s, 1 + s), hue turned by up to s x 30 degrees (0: the "
                     "build's augmentation alone).", lower_bound=0.0, upper_bound=0.9)
  flags.DEFINE_integer("seed_offset", 0, "Added to the build's seed for the student's data "
                       "order and augmentation: another draw of the same recipe.", lower_bound=0)
  flags.DEFINE_enum("reweight", "", ["", "balanced", "sqrt"], "Class weights of the student's "
                    "loss: n / (k n_c), or proportional to 1 / sqrt(n_c) (default: the build's).")
  flags.DEFINE_integer("reweight_epochs", None, "With --reweight: only the last this many "
                       "epochs are re-weighted (deferred re-weighting; default: every epoch).",
                       lower_bound=1)
  flags.DEFINE_bool("soup", False, "Also score the soup: the mean of the student's weights and "
                    "the build's last fine-tune epoch (both before cRT), then cRT.")
  flags.DEFINE_bool("resume", False, "Continue each build's student from its last checkpoint "
                    "in --work_dir (a finished one is scored again without training); the "
                    "student must have been trained under the same flags.")
  flags.DEFINE_string("work_dir", "", "Checkpoints and cached teacher probabilities, one folder "
                      "per build (default: distill_work/ beside --output_json).")
  flags.DEFINE_string("output_json", "distill.json", "JSON report path.")
  flags.DEFINE_string("output_md", "", "Markdown report path (default: beside the JSON).")


@dataclasses.dataclass(frozen=True)
class Student:
  """How the student is trained."""
  init: str  # One of INITS.
  epochs: int
  learning_rate: float
  warmup_epochs: float
  label_weight: float
  weight_decay: float = 0.0
  low_res_epochs: int = 0  # Progressive resizing: epochs at low_res_size before `epochs`.
  low_res_size: int = 160
  finetune_layers: Optional[int] = None  # None: the build's.
  label_smoothing: Optional[float] = None  # None: the build's.
  color_jitter: float = 0.0  # Colour jitter added to the build's augmentation.
  seed_offset: int = 0  # Added to the build's seed: another draw of the same recipe.
  soup: bool = False  # Also score the mean of the student's and the build's fine-tuned weights.
  reweight: str = ""  # Class weights of the student's loss ("": the build's class balance).
  reweight_epochs: Optional[int] = None  # Only the last this many re-weighted (None: all).


def score_build(build_dir: str, student: Student, work_dir: str,
                progress=common.progress, resume: bool = False) -> dict:
  """{"build", "n", "rows": {"shipped" | "student": {"val", "test", "test_tta8"}},
  "student_epoch_seconds", "teacher_train_balanced_accuracy"}."""
  from pipeline import config as config_lib  # pylint: disable=g-import-not-at-top
  from pipeline import metrics  # pylint: disable=g-import-not-at-top
  from pipeline.stages import training  # pylint: disable=g-import-not-at-top
  from pipeline.train import crt, distill, fit, soup  # pylint: disable=g-import-not-at-top
  config, bundle, split = readout.build_data(build_dir, [training.TRANSFER_WEIGHTS + ".index"])
  norm, train_cfg = config.model.normalization, config.train

  score = lambda model: readout.score_model(model, split, norm)

  t0 = time.time()
  rows = {"shipped": readout.cached_scores(build_dir, os.path.join(work_dir, SHIPPED_SCORES),
                                          score)}
  progress(f"distill: {build_dir}: shipped model scored ({time.time() - t0:.0f} s)")
  model = readout.load_model(build_dir, train_cfg.finetune_keep)
  ctx = fit.Context(bundle=bundle, normalization=norm, batch_size=train_cfg.batch_size,
                    class_balance=train_cfg.finetune_class_balance, augment=train_cfg.augment,
                    seed=config.seed + student.seed_offset, work_dir=work_dir, resume=True,
                    log=progress, color_jitter=student.color_jitter)
  teacher = None  # With --label_weight=1 the target is the labels alone: no teacher to compute.
  if student.label_weight < 1:
    teacher = distill.teacher_probabilities(model, ctx)  # Reuses work_dir's cache.
  smoothing = (train_cfg.finetune.label_smoothing if student.label_smoothing is None
               else student.label_smoothing)
  targets = distill.soft_targets(split["train"].labels, len(bundle.labels), smoothing, teacher,
                                 student.label_weight)
  if student.init == "transfer":
    model.load_weights(os.path.join(build_dir, training.TRANSFER_WEIGHTS)).expect_partial()
  phase = config_lib.PhaseConfig(epochs=student.epochs, learning_rate=student.learning_rate,
                                 warmup_epochs=student.warmup_epochs,
                                 weight_decay=student.weight_decay)
  layers = (train_cfg.finetune_layers if student.finetune_layers is None
            else student.finetune_layers)
  _record_recipe(work_dir, student, resume, progress)
  results = distill.run_distill(model, phase, layers, targets,
                                dataclasses.replace(ctx, resume=resume), student.low_res_epochs,
                                student.low_res_size, student.reweight,
                                student.reweight_epochs or student.epochs)
  models = {"student": model}
  if student.soup:  # The mean of the two fine-tunes before cRT, as the build's soup.
    models["soup"] = readout.load_model(build_dir, "last")
    models["soup"].set_weights(soup.average_weights([models["soup"].get_weights(),
                                                     model.get_weights()]))
  for name, net in models.items():
    if train_cfg.crt:
      crt.run_crt(net, train_cfg.crt_c, ctx)
    rows[name] = score(net)
  figures = lambda r: f"test {r['test']:.1%}, test TTA8 {r['test_tta8']:.1%}, val {r['val']:.1%}"
  progress(f"distill: {build_dir}: student scored ({time.time() - t0:.0f} s): "
           f"{figures(rows['student'])}; shipped {figures(rows['shipped'])}"
           + (f"; soup {figures(rows['soup'])}" if "soup" in rows else ""))
  return {"build": build_dir, "n": {s: len(v) for s, v in split.items()}, "rows": rows,
          "student_epoch_seconds": float(np.mean(results[-1].history["seconds"])),
          "low_res_epoch_seconds": float(np.mean(results[0].history["seconds"]))
          if student.low_res_epochs else None,
          "teacher_train_balanced_accuracy": None if teacher is None else
          metrics.argmax_balanced_accuracy(split["train"].labels, teacher)}


STUDENT_FILE = "student.json"  # The recipe of the student checkpointed in a work dir.
SHIPPED_SCORES = "shipped_scores.json"  # The shipped model's scores, cached in a work dir.


def _record_recipe(work_dir: str, student: Student, resume: bool, progress) -> None:
  """Keeps the student's recipe beside its checkpoints; with `resume`, the one found there
  must be the same (what --soup scores is not part of it).

  Raises:
    PipelineError: --resume of a student trained under another recipe.
  """
  from pipeline import atomic  # pylint: disable=g-import-not-at-top
  from pipeline.errors import PipelineError  # pylint: disable=g-import-not-at-top
  path = os.path.join(work_dir, STUDENT_FILE)
  recipe = {k: v for k, v in dataclasses.asdict(student).items() if k != "soup"}
  if resume and os.path.exists(path):
    found = atomic.read_json(path, "the benchmark's record of its student")
    if found != recipe:
      differ = sorted(k for k in set(found) | set(recipe) if found.get(k) != recipe.get(k))
      raise PipelineError(f"--resume: the student in {work_dir} was trained with another "
                          f"{', '.join(differ)}; give the flags it was trained with, or drop "
                          "--resume to train it again")
  elif resume:
    progress(f"distill: {work_dir} keeps no record of its student's recipe (an older "
             "benchmark's): resuming it as asked")
  os.makedirs(work_dir, exist_ok=True)
  atomic.write_json(path, recipe)


def measure_from_flags() -> dict:
  from pipeline.errors import PipelineError  # pylint: disable=g-import-not-at-top
  if not FLAGS.build_dir:
    raise PipelineError("give at least one --build_dir=BUILD (a finished build)")
  if FLAGS.reweight_epochs and not FLAGS.reweight:
    raise PipelineError("--reweight_epochs needs --reweight=balanced or --reweight=sqrt")
  if (FLAGS.reweight_epochs or 0) > FLAGS.epochs:
    raise PipelineError(f"--reweight_epochs={FLAGS.reweight_epochs} is more than "
                        f"--epochs={FLAGS.epochs}")
  student = Student(FLAGS.init, FLAGS.epochs, FLAGS.learning_rate, FLAGS.warmup_epochs,
                    FLAGS.label_weight, FLAGS.weight_decay, FLAGS.low_res_epochs,
                    FLAGS.low_res_size, FLAGS.finetune_layers, FLAGS.label_smoothing,
                    FLAGS.color_jitter, FLAGS.seed_offset, FLAGS.soup, FLAGS.reweight,
                    FLAGS.reweight_epochs)
  work_root = FLAGS.work_dir or os.path.join(
      os.path.dirname(os.path.abspath(FLAGS.output_json)), "distill_work")
  builds = []
  for i, build_dir in enumerate(FLAGS.build_dir, 1):
    builds.append(score_build(build_dir, student, common.work_folder(work_root, build_dir),
                              resume=FLAGS.resume))
    common.progress(f"distill: {i}/{len(FLAGS.build_dir)} builds done")
  return {"student": dataclasses.asdict(student), "builds": builds,
          "summary": readout.summarize(builds)}


def main(argv: List[str]) -> None:
  common.main("benchmarks.distill", argv, measure_from_flags, distill_report.markdown,
              FLAGS.output_json, FLAGS.output_md)


if __name__ == "__main__":
  define_flags()
  app.run(main)
