"""The headroom benchmark's pieces: dihedral views and the score rows."""

import itertools

import numpy as np
import pytest

from benchmarks import headroom
from pipeline import metrics


def test_dihedral_views_are_the_eight_symmetries_of_the_square():
  image = np.arange(4 * 4 * 3, dtype=np.uint8).reshape(1, 4, 4, 3)  # No symmetry of its own.
  views = [v(image) for v in headroom.dihedral_views()]
  assert len(views) == 8
  np.testing.assert_array_equal(views[0], image)  # The first view is the image as shipped.
  assert len({v.tobytes() for v in views}) == 8
  for v in views:  # Each moves whole pixels (channels intact) and keeps the batch shape.
    assert v.shape == image.shape and v.flags["C_CONTIGUOUS"]
    assert sorted(map(tuple, v.reshape(-1, 3))) == sorted(map(tuple, image.reshape(-1, 3)))
  # A group: any view of any view is one of the eight.
  for f, g in itertools.product(headroom.dihedral_views(), repeat=2):
    assert f(g(image)).tobytes() in {v.tobytes() for v in views}


def test_score_rows_ensemble_tta_and_offsets():
  rng = np.random.default_rng(0)
  y = np.repeat([0, 1, 2], [60, 30, 10])
  def noisy(bias):
    logits = np.eye(3)[y] * 1.5 + rng.normal(0, 1.0, (len(y), 3)) + bias
    return np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
  plain = {"a": noisy([1.0, 0, 0]), "b": noisy([1.0, 0, 0])}  # Both biased to class 0.
  tta = {"a": noisy([1.0, 0, 0]), "b": noisy([1.0, 0, 0])}
  fit = {n: (y, noisy([1.0, 0, 0]), noisy([1.0, 0, 0])) for n in plain}
  rows = {r["model"]: r for r in headroom.score_rows(y, plain, tta, fit)}
  assert set(rows) == {"a", "b", headroom.ENSEMBLE}
  mean = (plain["a"] + plain["b"]) / 2
  assert rows[headroom.ENSEMBLE]["balanced_accuracy"] == pytest.approx(
      metrics.balanced_accuracy(metrics.confusion_matrix(y, mean.argmax(1), 3)))
  for r in rows.values():
    # The bias toward class 0 is exactly what offsets fit on another split undo.
    assert r["fit_split_offsets"] > r["balanced_accuracy"] + 0.03
  # One model: no ensemble row, no fit-split columns without a fit split.
  single = headroom.score_rows(y, {"a": plain["a"]}, {"a": tta["a"]})
  assert [r["model"] for r in single] == ["a"] and "fit_split_offsets" not in single[0]


def test_the_graph_builds_the_same_eight_views_as_numpy():
  from pipeline import preprocessing
  from pipeline.tf_compat import tf
  images = np.random.default_rng(1).integers(0, 256, (2, 5, 5, 3)).astype(np.float32)
  stacked = preprocessing.dihedral_stack_tf(tf.constant(images)).numpy()
  np.testing.assert_array_equal(stacked, np.concatenate(
      [v(images) for v in headroom.dihedral_views()]))
  # The mean over views is per image (view-major batch), not mixed across images.
  mean = preprocessing.dihedral_mean_tf(tf.reduce_sum(stacked, axis=[1, 2])).numpy()
  np.testing.assert_allclose(mean, images.sum(axis=(1, 2)), rtol=1e-6)


def test_parity_tail_counts_the_images_int8_moves():
  from benchmarks import parity_tail
  reference = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4], [0.5, 0.4, 0.1]])
  candidate = np.array([[0.44, 0.46, 0.1], [0.1, 0.75, 0.15], [0.3, 0.3, 0.4], [0.5, 0.4, 0.1]])
  labels = np.array([0, 1, 0, 1])
  got = parity_tail.tail_figures(candidate, reference, labels)
  assert got["over"] == {"0.1": 1, "0.2": 1, "0.3": 0} and got["max"] == pytest.approx(0.26)
  # float32 was right on images 0 and 1: their true-class scores fell by 0.26 and 0.05.
  assert got["right_true_drop_max"] == pytest.approx(0.26)
  assert got["top1_agreement"] == 0.75
  lines = parity_tail.markdown({"candidate": "int8", "reference": "float32",
                                "builds": [{"build_dir": "b", **got}]})
  assert lines[-1].startswith("| b | ") and "| 1 | 1 | 0 |" in lines[-1]
