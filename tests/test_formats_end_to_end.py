"""Every input format runs through the real build entry function (data + transfer stages)."""

import os

import numpy as np
import pytest

from pipeline import config as config_lib
from pipeline import labels as labels_lib
from pipeline import stages
from tests import imagefiles


def _dataset(kind, root):
  if kind == "ham10000":
    dirs, csv_path, _ = imagefiles.ham_dataset(str(root), folders=2)
    return dict(data_format="ham10000", data_dir=dirs, metadata_csv=csv_path), \
        ("akiec", "bcc", "mel", "nv")
  if kind == "folders":
    for split, n in (("train", 8), ("test", 3)):
      for cls, colour in (("eczema", (200, 80, 80)), ("non_eczema", (80, 80, 200))):
        for i in range(n):
          imagefiles.write(str(root / split / cls / f"{i}.png"), colour=colour, seed=i)
    return dict(data_format="folders", data_dir=str(root)), ("eczema", "non_eczema")
  rng = np.random.default_rng(0)
  path = root / "hmnist_28_28_RGB.csv"
  root.mkdir(parents=True, exist_ok=True)
  with open(path, "w") as f:
    f.write(",".join([f"pixel{i:04d}" for i in range(2352)] + ["label"]) + "\n")
    for i in range(30):
      f.write(",".join(str(v) for v in rng.integers(0, 256, 2352)) + f",{[0, 4, 6][i % 3]}\n")
  return dict(data_format="hmnist_csv", metadata_csv=str(path)), ("akiec", "mel", "nv")


@pytest.mark.parametrize("kind", ["ham10000", "folders", "hmnist_csv"])
def test_format_through_the_build(tmp_path, kind):
  data_kwargs, labels = _dataset(kind, tmp_path / "data")
  cfg = config_lib.smoke_config()
  run = config_lib.smoke_run(str(tmp_path / "out"), stop_after="transfer")
  cfg = config_lib.replace(cfg, data=config_lib.replace(cfg.data, image_size=32, **data_kwargs))
  report = stages.run(cfg.validate(), run)
  assert labels_lib.read_labels(os.path.join(run.output_dir, "labels.txt")) == labels
  assert report["data"]["labels"] == list(labels)
  assert sum(report["data"]["totals"].values()) > 0
  assert report["training"]["transfer"]["history"]["loss"]
  assert os.path.isfile(os.path.join(run.output_dir, "splits.csv"))
