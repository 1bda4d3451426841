"""Training and QAT run under MirroredStrategy over two logical CPU devices."""

import math

from pipeline import config as config_lib
from pipeline import stages
from pipeline.tf_compat import tf


def test_mirrored_training_and_qat(tmp_path):
  assert len(tf.config.list_logical_devices("CPU")) == 2  # Set up in conftest.
  assert tf.distribute.MirroredStrategy().num_replicas_in_sync == 2
  cfg = config_lib.smoke_config(data=config_lib.DataConfig(
      data_format="synthetic", image_size=32, synthetic_classes=3, synthetic_per_class=30))
  cfg = config_lib.replace(
      cfg, train=config_lib.replace(cfg.train, strategy="mirrored",
                                    transfer=config_lib.PhaseConfig(1, 1e-3),
                                    finetune=config_lib.PhaseConfig(2, 3e-4)))
  report = stages.run(cfg.validate(), config_lib.smoke_run(str(tmp_path), stop_after="qat"))
  assert set(report["training"]) == {"transfer", "finetune", "qat"}
  assert report["training"]["transfer"]["mode"] == "cached_features"
  assert report["training"]["qat"]["mode"] == "distilled from the float model"
  for phase in report["training"].values():
    assert phase["history"]["loss"] and all(math.isfinite(v) for v in phase["history"]["loss"])
  assert report["training"]["finetune"]["history"]["loss"][-1] < \
      report["training"]["finetune"]["history"]["loss"][0]
