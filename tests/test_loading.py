"""`data.load` against a given label list: what a benchmark or the review page does when it
reads back some images of a build whose models embed the build's labels."""

import os
import shutil

import pytest

from pipeline import data as data_lib
from pipeline import synthetic
from pipeline.config import DataConfig

pytestmark = pytest.mark.fast


@pytest.fixture(name="folders")
def _folders(tmp_path):
  """A folders dataset of the synthetic classes c0..c2, 6 images each."""
  synthetic.write_dataset(str(tmp_path), 3, 6, 40, seed=0)
  return DataConfig(data_format="folders", data_dir=str(tmp_path), image_size=40)


def test_images_are_indexed_by_the_given_labels_not_by_the_classes_they_hold(folders):
  classes = data_lib.load(folders, 0, unsplit=True).labels
  assert len(classes) == 3
  shutil.rmtree(os.path.join(folders.data_dir, classes[0]))  # The images lack the first class.
  # Alone, the images' own classes decide the labels: the second class becomes index 0.
  alone = data_lib.load(folders, 0, unsplit=True)
  assert alone.labels == classes[1:]
  assert sorted(set(alone.splits[data_lib.ALL].labels)) == [0, 1]
  # Against the build's labels, each image keeps its class's index there.
  given = ("extra",) + classes  # An order of the build's own, and a class no image has.
  bundle = data_lib.load(folders, 0, unsplit=True, labels=given)
  assert bundle.labels == given
  split = bundle.splits[data_lib.ALL]
  assert [given[i] for i in split.labels] == [alone.labels[i] for i in
                                              alone.splits[data_lib.ALL].labels]
  assert sorted(set(split.labels)) == [2, 3]


def test_a_class_the_given_labels_lack_is_named(folders):
  classes = data_lib.load(folders, 0, unsplit=True).labels
  with pytest.raises(data_lib.UnknownClasses) as e:
    data_lib.load(folders, 0, unsplit=True, labels=classes[:1])
  assert e.value.classes == list(classes[1:])
