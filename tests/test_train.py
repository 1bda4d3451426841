"""Training building blocks on tiny real Keras models."""

import numpy as np

from pipeline.train import losses
from pipeline.train import qat as qat_lib
from pipeline.tf_compat import keras


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


def test_logit_adjusted_loss_is_cross_entropy_of_prior_shifted_logits():
  priors = np.array([0.7, 0.2, 0.1])
  logits = np.array([[1.0, 2.0, 0.5], [3.0, -1.0, 0.0]], np.float32)
  y = np.array([[0, 0, 1], [1, 0, 0]], np.float32)
  loss = losses.LogitAdjustedCrossentropy(priors, tau=1.0)
  shifted = logits + np.log(priors).astype(np.float32)
  want = -(y * (shifted - np.log(np.exp(shifted).sum(1, keepdims=True)))).sum(1).mean()
  got = float(loss(y, keras.activations.softmax(keras.backend.constant(logits))))
  np.testing.assert_allclose(got, want, rtol=1e-5)
  # A rare class's correct answer costs more than a frequent class's at equal confidence.
  even = keras.backend.constant(np.full((1, 3), 1 / 3, np.float32))
  assert float(loss(np.array([[0, 0, 1]], np.float32), even)) > float(
      loss(np.array([[1, 0, 0]], np.float32), even))


def test_a_model_compiled_with_the_logit_adjusted_loss_saves_and_loads(tmp_path):
  model = _dense(3, 0.1)
  model.compile("adam", losses.LogitAdjustedCrossentropy([0.5, 0.3, 0.2], label_smoothing=0.1))
  path = str(tmp_path / "m.keras")
  model.save(path)
  loaded = keras.models.load_model(path)
  assert loaded.loss.priors == [0.5, 0.3, 0.2] and loaded.loss.label_smoothing == 0.1
