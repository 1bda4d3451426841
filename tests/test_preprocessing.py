"""Preprocessing is the same eagerly, inside tf.data, and in the representative dataset."""

import math

import numpy as np

from pipeline import export as export_lib
from pipeline import preprocessing
from pipeline.data import DataBundle, InputNotes, Split
from pipeline.train import inputs
from pipeline.preprocessing import MOBILENET_V2, augment_layers
from pipeline.tf_compat import tf


def _split(n=6, size=24, seed=0):
  rng = np.random.default_rng(seed)
  images = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
  images[0, 0, 0] = 0
  images[0, -1, -1] = 255
  return Split(keys=[str(i) for i in range(n)], paths=[""] * n,
               labels=np.arange(n, dtype=np.int32) % 2, groups=[str(i) for i in range(n)],
               images=images, image_size=size)


def test_normalization_maps_pixel_range_to_minus_one_one():
  x = MOBILENET_V2.apply_np(np.array([0, 127.5, 255], np.float32)[:, None].repeat(3, 1))
  np.testing.assert_allclose(x[:, 0], [-1.0, 0.0, 1.0])
  assert MOBILENET_V2.input_range() == (-1.0, 1.0)


def test_eager_and_tf_data_preprocessing_agree():
  split = _split()
  eager = inputs.preprocess_batch(tf.constant(split.images), MOBILENET_V2).numpy()
  in_data = np.concatenate(list(
      inputs.eval_dataset(split, MOBILENET_V2, batch_size=4).as_numpy_iterator()))
  np.testing.assert_allclose(in_data, eager, atol=1e-6)
  np.testing.assert_allclose(eager, split.images / 127.5 - 1.0, atol=1e-6)


def test_streamed_and_cached_inputs_agree(tmp_path):
  from PIL import Image
  split = _split(size=32)
  paths = []
  for i, img in enumerate(split.images):
    paths.append(str(tmp_path / f"{i}.png"))
    Image.fromarray(img).save(paths[-1])
  streamed = Split(split.keys, paths, split.labels, split.groups, images=None, image_size=32)
  a = np.concatenate(list(inputs.eval_dataset(split, MOBILENET_V2, 4).as_numpy_iterator()))
  b = np.concatenate(list(inputs.eval_dataset(streamed, MOBILENET_V2, 4)
                          .as_numpy_iterator()))
  np.testing.assert_allclose(a, b, atol=1e-6)


def test_representative_dataset_feeds_the_training_normalization():
  split = _split()
  gen = export_lib._representative(split.images, MOBILENET_V2)  # pylint: disable=protected-access
  fed = np.concatenate([batch[0] for batch in gen()])
  np.testing.assert_allclose(fed, split.images / 127.5 - 1.0, atol=1e-6)


def test_calibration_picks_every_class_and_real_images():
  labels = np.array([0] * 50 + [1] * 3 + [2] * 2)
  pool = np.arange(len(labels))[:, None, None, None] * np.ones((1, 2, 2, 3), np.uint8)
  picked = export_lib.calibration_pixels(lambda idx: pool[idx], labels, 10, seed=0)
  ids = picked[:, 0, 0, 0]
  assert len(ids) == 10
  assert set(labels[ids]) == {0, 1, 2}


def test_training_dataset_augments_within_pixel_range_and_weights_classes():
  split = _split(n=8)
  split.labels = np.array([0, 0, 0, 0, 0, 0, 1, 1], np.int32)  # Balanced weights 2/3 and 2.
  bundle = DataBundle(labels=("a", "b"), splits={"train": split}, image_size=24,
                      notes=InputNotes(strict=False))
  ds, steps = inputs.training_dataset(bundle, MOBILENET_V2, 4, seed=0, augment=True,
                                      class_balance="balanced")
  assert steps == math.ceil(len(split.labels) / 4) == len(list(ds))
  x, y, w = next(iter(ds))
  assert x.shape == (4, 24, 24, 3)
  assert float(tf.reduce_min(x)) >= -1.0 and float(tf.reduce_max(x)) <= 1.0
  np.testing.assert_allclose(w.numpy(), np.where(y.numpy()[:, 1] == 1, 2.0, 2 / 3), rtol=1e-6)
  aug = augment_layers(0)(tf.constant(split.images, tf.float32), training=True).numpy()
  assert not np.allclose(aug, split.images)  # It does change the images.


def _views(images):
  return [preprocessing.dihedral_view_np(images, k, mirrored)
          for k, mirrored in preprocessing.DIHEDRAL]


def test_dihedral_views_are_the_eight_symmetries_of_the_square():
  image = np.arange(4 * 4 * 3, dtype=np.uint8).reshape(1, 4, 4, 3)  # No symmetry of its own.
  views = _views(image)
  assert len(views) == 8
  np.testing.assert_array_equal(views[0], image)  # The first view is the image as shipped.
  assert len({v.tobytes() for v in views}) == 8
  for v in views:  # Each moves whole pixels (channels intact) and keeps the batch shape.
    assert v.shape == image.shape
    assert sorted(map(tuple, v.reshape(-1, 3))) == sorted(map(tuple, image.reshape(-1, 3)))
  # A group: any view of any view is one of the eight.
  for view in views:
    assert all(w.tobytes() in {v.tobytes() for v in views} for w in _views(view))


def test_the_graph_builds_the_same_eight_views_as_numpy():
  images = np.random.default_rng(1).integers(0, 256, (2, 5, 5, 3)).astype(np.float32)
  stacked = preprocessing.dihedral_stack_tf(tf.constant(images)).numpy()
  np.testing.assert_array_equal(stacked, np.concatenate(_views(images)))
  # The mean over views is per image (view-major batch), not mixed across images.
  mean = preprocessing.dihedral_mean_tf(tf.reduce_sum(stacked, axis=[1, 2])).numpy()
  np.testing.assert_allclose(mean, images.sum(axis=(1, 2)), rtol=1e-6)
