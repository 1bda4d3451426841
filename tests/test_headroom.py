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


def test_centre_zoom_keeps_the_centre_at_the_input_size():
  image = np.zeros((2, 8, 8, 3), np.uint8)
  image[:, 2:6, 2:6] = 200  # The centre half of each side.
  image[1, 2:6, 2:6, 1] = 50
  np.testing.assert_array_equal(headroom.centre_zoom(image, 1.0), image)
  zoomed = headroom.centre_zoom(image, 0.5)
  assert zoomed.shape == image.shape and zoomed.dtype == np.uint8
  # Only the centre is left, spread over the whole image; each image keeps its own pixels.
  np.testing.assert_array_equal(zoomed[0], np.full((8, 8, 3), 200))
  np.testing.assert_array_equal(zoomed[1, ..., 1], np.full((8, 8), 50))


def test_tta_zooms_are_fractions():
  from pipeline.errors import PipelineError
  assert headroom.parse_zooms(["0.875", "0.75"]) == [0.875, 0.75]
  for bad in ("1", "1.5", "0", "-0.5", "x", "nan"):
    with pytest.raises(PipelineError, match="--tta_zooms"):
      headroom.parse_zooms([bad])


def test_score_rows_with_zoomed_views():
  y = np.array([0, 0, 1, 1])
  right, wrong = np.eye(2)[y] * 0.8 + 0.1, np.eye(2)[1 - y] * 0.8 + 0.1
  zoomed = {"a": {"0.75": right, "all": wrong}, "b": {"0.75": right, "all": right}}
  rows = {r["model"]: r for r in headroom.score_rows(
      y, {"a": right, "b": right}, {"a": right, "b": right}, zoomed=zoomed)}
  assert rows["a"]["tta8_zooms"] == {"0.75": 1.0, "all": 0.0}
  # The ensemble averages each key over the models: a tie of right and wrong goes to class 0.
  assert rows[headroom.ENSEMBLE]["tta8_zooms"] == {"0.75": 1.0, "all": 0.5}
  lines = headroom.markdown({"n": 4, "split": "test", "fit_split": None, "zooms": [0.75],
                             "rows": list(rows.values())})
  assert "| TTA8 at 0.75 | all views |" in lines[4] and lines[-1].endswith("| 100.0% | 50.0% |")


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
