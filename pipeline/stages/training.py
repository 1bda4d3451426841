"""Stages `transfer`, `finetune`, `crt` and `qat`: train the float model, re-fit its
classifier, then train its int8-aware copy.

Each has a `restore_*` twin that --resume uses for a stage that already finished."""

import dataclasses
import json
import os

import numpy as np

from pipeline import atomic
from pipeline import export as export_lib
from pipeline import model as model_lib
from pipeline import report as report_lib
from pipeline.config import BALANCE_NAMES, BuildConfig
from pipeline.stages.state import BuildState
from pipeline.tf_compat import keras, tf
from pipeline.train import crt, fit, phases, qat

FLOAT_MODEL = "model_float.keras"  # Written by finetune, rewritten by crt with its classifier.
CRT_REPORT = "crt.json"
TRANSFER_WEIGHTS = os.path.join("checkpoints", "transfer_final_weights")
QAT_WEIGHTS = os.path.join("checkpoints", "qat_final_weights")


def _context(config: BuildConfig, state: BuildState) -> fit.Context:
  return fit.Context(bundle=state.bundle, normalization=config.model.normalization,
                     batch_size=config.train.batch_size,
                     class_balance=config.train.class_balance, augment=config.train.augment,
                     seed=config.seed, work_dir=state.options.output_dir,
                     resume=state.options.resume, log=state.log)


def _new_model(config: BuildConfig, state: BuildState) -> BuildState:
  strategy = state.strategy or fit.get_strategy(config.train.strategy)
  with strategy.scope():
    model = model_lib.build_classifier(len(state.labels), config.data.image_size,
                                       config.model.alpha, config.model.weights,
                                       config.model.dropout, seed=config.seed)
  return dataclasses.replace(state, strategy=strategy, float_model=model)


def transfer(config: BuildConfig, state: BuildState) -> BuildState:
  """Builds the classifier and trains its new head on the frozen backbone."""
  state = _new_model(config, state)
  model = state.float_model
  if config.model.weights == "none":
    # A random backbone's BatchNorm statistics are meaningless; start them at the data's.
    train = state.bundle.splits["train"]
    sample = np.random.default_rng(config.seed).permutation(len(train))[:128]
    model_lib.init_batchnorm_statistics(
        model, config.model.normalization.apply_np(train.pixels(sample)))
  with state.strategy.scope():
    result = phases.run_transfer(model, config.train.transfer, _context(config, state))
  model.save_weights(state.path(TRANSFER_WEIGHTS))
  return dataclasses.replace(state, training={**state.training, "transfer": vars(result)})


def restore_transfer(config: BuildConfig, state: BuildState) -> BuildState:
  state = _new_model(config, state)
  state.float_model.load_weights(state.path(TRANSFER_WEIGHTS)).expect_partial()
  return state


def finetune(config: BuildConfig, state: BuildState) -> BuildState:
  """Fine-tunes the top backbone layers; saves model_float.keras."""
  train = config.train
  ctx = dataclasses.replace(_context(config, state), class_balance=train.finetune_class_balance)
  with state.strategy.scope():
    result = phases.run_finetune(state.float_model, train.finetune, train.finetune_layers, ctx)
  atomic.write_with(state.path(FLOAT_MODEL), state.float_model.save)
  # In phase order: a re-run's later phases come after it.
  before = {name: r for name, r in state.training.items() if name == "transfer"}
  after = {name: r for name, r in state.training.items() if name not in ("transfer", "finetune")}
  return dataclasses.replace(state, training={**before, "finetune": vars(result), **after})


def restore_finetune(config: BuildConfig, state: BuildState) -> BuildState:
  strategy = state.strategy or fit.get_strategy(config.train.strategy)
  with strategy.scope():
    model = keras.models.load_model(state.path(FLOAT_MODEL))
  return dataclasses.replace(state, strategy=strategy, float_model=model)


def crt_stage(config: BuildConfig, state: BuildState) -> BuildState:
  """With --crt, re-trains the float model's classifier, class-balanced, on its frozen
  features; model_float.keras then holds the new classifier."""
  if not config.train.crt:
    balance = config.train.finetune_class_balance
    state.log("crt: skipped (train.crt is false); the fine-tuned classifier stays"
              + (f", trained with {BALANCE_NAMES[balance]}: it favours the frequent classes; "
                 "give --set=train.finetune_class_weight=balanced for a balanced one"
                 if balance in ("none", "sqrt") else ""))
    if os.path.exists(state.path(CRT_REPORT)):  # An earlier build's, in the same directory.
      os.remove(state.path(CRT_REPORT))
    return dataclasses.replace(state, crt=None)
  with state.strategy.scope():
    result = crt.run_crt(state.float_model, config.train.crt_c, _context(config, state))
  atomic.write_with(state.path(FLOAT_MODEL), state.float_model.save)
  atomic.write_json(state.path(CRT_REPORT), result)
  return dataclasses.replace(state, crt=result)


def restore_crt(config: BuildConfig, state: BuildState) -> BuildState:
  state = restore_finetune(config, state)
  with open(state.path(CRT_REPORT), encoding="utf-8") as f:
    return dataclasses.replace(state, crt=json.load(f))


def calibration(config: BuildConfig, train):
  """(uint8 calibration images, their normalized batches): the training images that QAT's
  ranges and the PTQ export are calibrated on."""
  pixels = export_lib.calibration_pixels(train.pixels, train.labels,
                                         config.export.calibration_images, config.seed)
  norm, batch = config.model.normalization, config.train.batch_size
  return pixels, [norm.apply_np(pixels[i:i + batch]) for i in range(0, len(pixels), batch)]


def _qat_model(config: BuildConfig, state: BuildState) -> BuildState:
  """The QAT copy of the float model, its ranges calibrated on real training images."""
  train = state.bundle.splits["train"]
  state.log(f"qat: wrapping the model for QAT, activation ranges calibrated on "
            f"{min(config.export.calibration_images, len(train))} training images")
  pixels, batches = calibration(config, train)
  with state.strategy.scope():
    qat_model = qat.quantize_model(state.float_model, config.train.finetune_layers,
                                   config.model.normalization, calibration_batches=batches)
  return dataclasses.replace(state, qat_model=qat_model, calibration=pixels)


def qat_stage(config: BuildConfig, state: BuildState) -> BuildState:
  """Quantization-aware training of the fine-tuned model."""
  state = _qat_model(config, state)
  with state.strategy.scope():
    result = qat.run_qat(state.qat_model, config.train.qat, state.float_model,
                         _context(config, state))
  state.qat_model.save_weights(state.path(QAT_WEIGHTS))
  state = dataclasses.replace(state, training={**state.training, "qat": vars(result)})
  report_lib.plot_training_curves(state.training, state.path("training_curves.png"))
  return state


def leave_cluster(config: BuildConfig, state: BuildState) -> BuildState:
  """After the training stages of a multi-worker build: the chief's float and QAT models,
  rebuilt from their saved files outside the strategy, so that export traces no collective op
  and needs no other worker."""
  state.log("training done on every worker; the chief goes on alone")
  state = dataclasses.replace(state, strategy=tf.distribute.get_strategy())
  return restore_qat(config, restore_finetune(config, state))


def restore_qat(config: BuildConfig, state: BuildState) -> BuildState:
  state = _qat_model(config, state)
  state.qat_model.load_weights(state.path(QAT_WEIGHTS)).expect_partial()
  qat.pin_input_range(state.qat_model, config.model.normalization)
  return state
