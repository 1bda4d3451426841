"""Training building blocks on tiny real Keras models."""

import dataclasses
import os

import numpy as np
import pytest

from pipeline import metrics
from pipeline.config import PhaseConfig
from pipeline.errors import PipelineError
from pipeline.train import crt as crt_lib
from pipeline.train import fit
from pipeline.train import qat as qat_lib
from pipeline.tf_compat import keras, tf


def _dense(seed: int, stddev: float) -> keras.Model:
  return keras.Sequential([
      keras.Input((8,)),
      keras.layers.Dense(3, activation="softmax",
                         kernel_initializer=keras.initializers.RandomNormal(stddev=stddev,
                                                                            seed=seed))])


def test_distillation_learns_the_teacher_and_ignores_the_labels():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(512, 8)).astype(np.float32)
  teacher, student = _dense(1, 1.0), _dense(2, 0.01)
  wanted = teacher.predict(x, verbose=0).argmax(1)
  assert np.bincount(wanted, minlength=3).min() > 50  # The teacher uses every class.
  teacher_weights = [w.copy() for w in teacher.get_weights()]
  labels = np.eye(3, dtype=np.float32)[np.zeros(len(x), int)]  # All class 0: not the target.
  model = qat_lib.Distillation(student, teacher)
  model.compile(keras.optimizers.Adam(0.05), keras.losses.CategoricalCrossentropy())
  before = (student.predict(x, verbose=0).argmax(1) == wanted).mean()
  history = model.fit(x, labels, sample_weight=np.ones(len(x), np.float32), batch_size=64,
                      epochs=30, verbose=0)
  after = model.predict(x, verbose=0).argmax(1)
  assert history.history["loss"][-1] < history.history["loss"][0]
  assert (after == wanted).mean() > 0.95 > before
  for kept, now in zip(teacher_weights, teacher.get_weights()):
    np.testing.assert_array_equal(kept, now)


def test_crt_classifier_is_the_class_balanced_regressions_softmax():
  from sklearn.linear_model import LogisticRegression  # pylint: disable=g-import-not-at-top
  from sklearn.metrics import balanced_accuracy_score  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  centers = rng.normal(scale=0.4, size=(3, 16))

  def sample(counts):
    y = np.repeat(np.arange(3), counts)
    return centers[y] + rng.normal(size=(len(y), 16)), y

  x, y = sample([600, 60, 12])  # Long-tailed, overlapping classes.
  kernel, bias = crt_lib.fit_classifier(x, y, 3, c=0.1)
  assert kernel.shape == (16, 3) and bias.shape == (3,)
  logits = x @ kernel + bias
  probs = np.exp(logits - logits.max(1, keepdims=True))
  probs /= probs.sum(1, keepdims=True)
  balanced = LogisticRegression(C=0.1, class_weight="balanced", max_iter=5000).fit(x, y)
  np.testing.assert_allclose(probs, balanced.predict_proba(x), atol=1e-4)
  # Class-balanced: on balanced held-out data it beats the same regression fit plainly.
  held_x, held_y = sample([300, 300, 300])
  plain = LogisticRegression(C=0.1, max_iter=5000).fit(x, y)
  assert (balanced_accuracy_score(held_y, (held_x @ kernel + bias).argmax(1)) >
          balanced_accuracy_score(held_y, plain.predict(held_x)) + 0.15)


def test_crt_refuses_a_class_without_training_images():
  x = np.random.default_rng(0).normal(size=(20, 4))
  with pytest.raises(PipelineError, match="class index 2 has no training image.*train.crt=false"):
    crt_lib.fit_classifier(x, np.arange(20) % 2, 3, c=0.1)


@pytest.mark.parametrize("keep", ["last", "best_val"])
def test_fit_phase_keeps_the_last_or_the_best_validation_epoch(tmp_path, keep):
  """Training labels the validation split contradicts: validation balanced accuracy falls
  as training learns, so the best epoch is an early one and differs from the last."""
  rng = np.random.default_rng(0)
  x = rng.normal(size=(256, 8)).astype(np.float32)
  y = (x[:, 0] > 0).astype(int)
  keras.utils.set_random_seed(0)
  model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(2, activation="softmax")])
  data = tf.data.Dataset.from_tensor_slices(
      (x, np.eye(2, dtype=np.float32)[y], np.ones(len(x), np.float32))).batch(32).repeat()
  ctx = fit.Context(bundle=None, normalization=None, batch_size=32, class_balance="none",
                    augment=False, seed=0, work_dir=str(tmp_path), resume=False,
                    log=lambda message: None)
  result = fit.fit_phase("finetune", model, PhaseConfig(epochs=5, learning_rate=0.02), ctx,
                         keras.losses.CategoricalCrossentropy(), data, 8, x, 1 - y, keep=keep)
  history = result.history["val_balanced_accuracy"]
  assert result.best_epoch < 5 and max(history) > history[-1]
  now = metrics.argmax_balanced_accuracy(1 - y, model.predict(x, verbose=0))
  if keep == "last":
    assert result.kept_epoch == 5 and now == pytest.approx(history[-1])
  else:
    assert result.kept_epoch == result.best_epoch and now == pytest.approx(max(history))
  # Another copy of the architecture loads the same epochs from the phase's checkpoints.
  copy = keras.models.clone_model(model)
  for epoch, wanted in (("last", history[-1]), ("best_val", max(history))):
    fit.restore_epoch(copy, str(tmp_path), "finetune", epoch)
    assert metrics.argmax_balanced_accuracy(1 - y, copy.predict(x, verbose=0)) == pytest.approx(
        wanted)


def test_finetune_class_weight_balances_the_fine_tune_alone(tmp_path, monkeypatch):
  """--finetune_class_weight=sqrt: the transfer phase keeps --class_weight's balance (none),
  the fine-tune's batches carry 1 / sqrt(n_class) weights, and the model card says so; a
  re-run from finetune may change it (the stages before did not read it)."""
  from pipeline import assets  # pylint: disable=g-import-not-at-top
  from pipeline import config as config_lib  # pylint: disable=g-import-not-at-top
  from pipeline import stages  # pylint: disable=g-import-not-at-top
  from pipeline import synthetic  # pylint: disable=g-import-not-at-top
  from pipeline.config import readers  # pylint: disable=g-import-not-at-top
  from pipeline.train import inputs  # pylint: disable=g-import-not-at-top
  seen, original = [], inputs.train_sampling

  def observed(bundle, seed, class_balance):
    indices, weights = original(bundle, seed, class_balance)
    seen.append((class_balance, weights))
    return indices, weights

  monkeypatch.setattr(inputs, "train_sampling", observed)  # Observes; the real one runs.
  root = tmp_path / "data"  # The demo set with one class cut to a third: weights differ.
  synthetic.write_dataset(str(root), 3, 60, 48, seed=0)
  rare = root / synthetic.class_names(3)[2]
  for name in sorted(os.listdir(rare))[20:]:
    os.remove(rare / name)
  base = config_lib.smoke_config()
  config = config_lib.smoke_config(
      data=dataclasses.replace(base.data, data_format="folders", data_dir=str(root)),
      train=dataclasses.replace(base.train, class_weight="none", finetune_class_weight="sqrt"))
  report = stages.run(config, config_lib.smoke_run(str(tmp_path / "b"), stop_after="finetune"))
  (transfer, transfer_weights), (finetune, finetune_weights) = seen
  assert (transfer, finetune) == ("none", "sqrt")
  np.testing.assert_array_equal(transfer_weights, 1.0)
  counts = report["data"]["counts"]["train"]
  weights = inputs.class_weights(np.array([counts[c] for c in report["data"]["labels"]]), "sqrt")
  np.testing.assert_allclose(finetune_weights, [weights[i] for i in range(len(weights))],
                             rtol=1e-6)
  assert len(set(np.round(finetune_weights, 6).tolist())) == 2  # The rare class weighs more.
  assert "square-root inverse-frequency class weights" in assets.training_summary(
      report["training"])
  assert readers.first_reader("train.finetune_class_weight") == "finetune"
  with pytest.raises(PipelineError, match="finetune_class_weight=.sqrtt. is not valid; use one "
                     "of: balanced, none, sqrt"):
    dataclasses.replace(base.train, finetune_class_weight="sqrtt").validate()


@pytest.mark.parametrize("balance, says", [
    ("sqrt", "trained with square-root inverse-frequency class weights: it favours"),
    ("none", "trained with the plain loss, no class weights: it favours"),
    ("balanced", None)])
def test_nocrt_says_how_the_classifier_it_keeps_was_trained(tmp_path, balance, says):
  from pipeline.config import BuildConfig, RunOptions, replace
  from pipeline.stages import training  # pylint: disable=g-import-not-at-top
  from pipeline.stages.state import BuildState  # pylint: disable=g-import-not-at-top
  config = BuildConfig()
  config = replace(config, train=replace(config.train, crt=False, finetune_class_weight=balance))
  lines = []
  state = BuildState(options=RunOptions(output_dir=str(tmp_path)), log=lines.append, started="")
  assert training.crt_stage(config, state).crt is None
  assert lines[0].startswith("crt: skipped (train.crt is false); the fine-tuned classifier stays")
  assert (says in lines[0]) if says else lines[0].endswith("stays")
