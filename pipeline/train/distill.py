"""Distillation of the fine-tuned model's test-time augmentation into a student.

The fine-tuned model averaged over the 8 dihedral views of an image (rotations and mirror
images: dermoscopy has no canonical orientation) is often a better classifier than the model
on one view (BUILD.md "Headroom"), but costs 8 invokes. Here it is the teacher: its mean
probabilities on each un-augmented training image are computed once, and a student of the
same architecture is fine-tuned on augmented images against a mix of the smoothed labels and
those probabilities, either started again from the transfer-stage weights (born-again
networks, Furlanello et al., ICML 2018) or continuing from the fine-tuned ones.
`benchmarks.distill` measures both on finished builds (BUILD.md "Distillation"); the build
does not distil (it did not win there). The student's phase can also run without a teacher
(targets = the smoothed labels) and with progressive resizing, which is how the benchmark
measured weight decay and progressive resizing as re-runs of fine-tuning (BUILD.md "Weight
decay and progressive resizing"). The build's fine-tune stage has weight decay as an option
(--finetune_weight_decay, default 0), not progressive resizing.
"""

import dataclasses
import os
import sys
import time
from typing import List, Optional

import numpy as np

from pipeline import atomic
from pipeline import metrics
from pipeline import model as model_lib
from pipeline.config import PhaseConfig
from pipeline.train import inputs
from pipeline.train.fit import Context, PhaseResult, duration, fit_phase, make_optimizer
from pipeline.tf_compat import keras

TEACHER_CACHE = os.path.join("cache", "teacher_train.npy")


def teacher_probabilities(model: keras.Model, ctx: Context) -> np.ndarray:
  """[N, K] the model's mean probabilities over the 8 dihedral views of each training image
  (no other augmentation), computed once and kept in work_dir/cache so --resume reuses them."""
  path = os.path.join(ctx.work_dir, TEACHER_CACHE)
  train = ctx.bundle.splits["train"]
  if ctx.resume and os.path.exists(path):
    probs = np.load(path)
    if probs.shape == (len(train), len(ctx.bundle.labels)):
      return probs
  t0 = time.time()
  ctx.log(f"distill: the teacher's 8-view probabilities on {len(train)} training images")
  teacher = model_lib.dihedral_tta_model(model)
  probs = teacher.predict(inputs.eval_dataset(train, ctx.normalization, ctx.batch_size),
                          verbose=1 if sys.stdout.isatty() else 0).astype(np.float32)
  atomic.write_with(path, lambda tmp: np.save(tmp, probs))
  ctx.log(f"distill: teacher ready in {duration(time.time() - t0)}; its training balanced "
          f"accuracy {metrics.argmax_balanced_accuracy(train.labels, probs):.4f}")
  return probs


def soft_targets(labels: np.ndarray, num_classes: int, label_smoothing: float,
                 teacher: Optional[np.ndarray] = None, label_weight: float = 1.0) -> np.ndarray:
  """label_weight * smoothed one-hot labels + (1 - label_weight) * teacher, per image [N, K]
  (each row sums to 1). Without a teacher, the smoothed labels alone (label_weight must be 1).

  Raises:
    ValueError: label_weight below 1 without a teacher.
  """
  smoothed = (np.eye(num_classes, dtype=np.float32)[labels] * (1.0 - label_smoothing)
              + label_smoothing / num_classes)
  if teacher is None:
    if label_weight != 1.0:
      raise ValueError(f"label_weight {label_weight} < 1 needs a teacher")
    return smoothed.astype(np.float32)
  return (label_weight * smoothed + (1.0 - label_weight) * teacher).astype(np.float32)


def run_distill(model: keras.Model, phase: PhaseConfig, layers: int, targets: np.ndarray,
                ctx: Context, low_res_epochs: int = 0, low_res_size: int = 0,
                reweight: str = "", reweight_epochs: int = 0) -> List[PhaseResult]:
  """Fine-tunes `model` (the student, from whatever weights it holds) against soft targets.

  With low_res_epochs, progressive resizing: first low_res_epochs on images resized to
  low_res_size (the same weights, through `model_lib.at_input_size`; an epoch costs about
  (low_res_size / image size)^2 of one at full size), then phase.epochs at full size; one
  optimizer and one warm-up and cosine schedule run over both.
  With reweight ("balanced" or "sqrt", `inputs.class_weights`), the last reweight_epochs of
  the full-size epochs weight each image's loss by its class (deferred re-weighting, Cao et
  al., NeurIPS 2019, when fewer than phase.epochs), under the same one schedule.

  Args:
    model: the student (trained in place): the transfer-stage weights for a born-again
      student, or the fine-tuned ones to continue.
    phase: epochs at full size and the learning-rate schedule (label smoothing is already in
      `targets`).
    layers: how many top backbone layers to train, as in fine-tuning.
    targets: [N, K] per training image, `soft_targets(...)`.
    ctx: what the phases share (checkpoints go to work_dir/checkpoints/distill and, with
      low-resolution or re-weighted epochs, distill_low_res and distill_reweighted).
    low_res_epochs: epochs at low_res_size before the full-size ones (0: none).
    low_res_size: the low resolution, in pixels.
    reweight: the class weights of the last reweight_epochs ("": none, the build's balance).
    reweight_epochs: how many of phase.epochs are re-weighted (1 to phase.epochs).

  Returns:
    The results of each part that ran (low-resolution, full-size, re-weighted); the model
    holds the last epoch.
  """
  model_lib.set_trainable(model, layers)
  val = ctx.bundle.splits["val"]
  if reweight and not 1 <= reweight_epochs <= phase.epochs:
    raise ValueError(f"reweight_epochs {reweight_epochs} not in 1..{phase.epochs}")
  late = reweight_epochs if reweight else 0
  # (checkpoint folder, model, epochs, image size, class balance) of each part, in order.
  parts = [("distill_low_res", model_lib.at_input_size(model, low_res_size), low_res_epochs,
            low_res_size, ctx.class_balance)] if low_res_epochs else []
  parts += [("distill", model, phase.epochs - late, None, ctx.class_balance),
            ("distill_reweighted", model, late, None, reweight)]
  parts = [part for part in parts if part[2]]
  optimizer, results = None, []
  for name, net, epochs, size, balance in parts:
    ds, steps = inputs.training_dataset(ctx.bundle, ctx.normalization, ctx.batch_size,
                                        ctx.seed + 2 + len(results), ctx.augment,
                                        balance, targets=targets, image_size=size,
                                        color_jitter=ctx.color_jitter)
    if len(parts) > 1 and optimizer is None:  # One optimizer, its schedule over all parts.
      optimizer = make_optimizer(
          dataclasses.replace(phase, epochs=low_res_epochs + phase.epochs), steps)
    results.append(fit_phase(
        name, net, dataclasses.replace(phase, epochs=epochs), ctx,
        keras.losses.CategoricalCrossentropy(), ds.repeat(), steps,
        inputs.eval_dataset(val, ctx.normalization, ctx.batch_size, size), val.labels,
        mode=f"top {layers} backbone layers" + (f" at {size} px" if size else "")
        + (f", {balance} class weights" if balance != ctx.class_balance else ""),
        keep="last", optimizer=optimizer))
  return results
