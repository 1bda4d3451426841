"""--finetune_runs: several fine-tunes of the same transfer weights, averaged into one model
(pipeline.train.soup), through the real build on a tiny model."""

import dataclasses
import os

import numpy as np
import pytest

from benchmarks import readout
from pipeline import assets
from pipeline import config as config_lib
from pipeline import stages
from pipeline.config import PhaseConfig
from pipeline.stages.training import FLOAT_MODEL
from pipeline.tf_compat import keras
from pipeline.train import fit, inputs, soup


def _soup_config(runs: int):
  base = config_lib.smoke_config()
  return config_lib.smoke_config(train=dataclasses.replace(
      base.train, finetune=PhaseConfig(epochs=2, learning_rate=1e-3), finetune_runs=runs,
      augment=True))


def _run_weights(out: str, phase: str):
  model = keras.models.load_model(os.path.join(out, FLOAT_MODEL))
  fit.restore_epoch(model, out, phase, "last")
  return model.get_weights()


def test_the_build_keeps_the_mean_of_independent_fine_tunes_of_the_transfer_weights(
    tmp_path, monkeypatch):
  """Two runs from the same transfer weights, with their own data order and checkpoints; the
  saved float model is their element-wise mean (the backbone; cRT then re-fits the head);
  the report and the model card say so; a re-run from finetune trains both runs again."""
  out = str(tmp_path / "build")
  seeds, original = [], inputs.training_dataset

  def observed(bundle, normalization, batch_size, seed, *args, **kwargs):
    seeds.append(seed)
    return original(bundle, normalization, batch_size, seed, *args, **kwargs)

  monkeypatch.setattr(inputs, "training_dataset", observed)  # Observes; the real one runs.
  report = stages.run(_soup_config(2), config_lib.smoke_run(out, stop_after="crt"))
  assert len(seeds) == 2 and seeds[0] != seeds[1]  # Each run its own data order.
  first, second = _run_weights(out, "finetune"), _run_weights(out, "finetune_run2")
  assert max(np.abs(a - b).max() for a, b in zip(first, second)) > 1e-3  # Not one run twice.
  saved = keras.models.load_model(os.path.join(out, FLOAT_MODEL))
  head = {id(w) for w in saved.get_layer("classifier").weights}
  for variable, a, b in zip(saved.weights, first, second):
    if id(variable) not in head:  # cRT replaced the classifier after the mean.
      np.testing.assert_allclose(variable.numpy(), (a + b) / 2, atol=1e-6, err_msg=variable.name)
  # The benchmarks read the build's "last epoch" as the soup of its runs' last epochs.
  for got, a, b in zip(readout.load_model(out, "last").get_weights(), first, second):
    np.testing.assert_allclose(got, (a + b) / 2, atol=1e-6)
  training = report["training"]
  assert training["finetune"]["soup"]["runs"] == 2
  assert 0 <= training["finetune"]["soup"]["val_balanced_accuracy"] <= 1
  assert len(training["finetune_run2"]["history"]["loss"]) == 2
  assert "2 runs from the transfer weights, their weights averaged" in (
      assets.training_summary(training))

  again = stages.run(_soup_config(2), config_lib.smoke_run(out, rerun_from="finetune",
                                                           stop_after="finetune"))
  assert again["training"]["finetune_run2"]["resumed_from_epoch"] == 0  # Not the old run's.
  single = stages.run(_soup_config(1), config_lib.smoke_run(out, rerun_from="finetune",
                                                            stop_after="finetune"))
  assert "finetune_run2" not in single["training"] and "soup" not in single["training"]["finetune"]
  assert not os.path.exists(os.path.join(out, "checkpoints", "finetune_run2"))


def test_averaging_weights_is_element_wise_and_refuses_other_architectures():
  a = [np.zeros((2, 3), np.float32), np.ones(3, np.float32)]
  b = [np.full((2, 3), 2, np.float32), np.full(3, 4, np.float32)]
  mean = soup.average_weights([a, b])
  np.testing.assert_array_equal(mean[0], 1.0)
  np.testing.assert_array_equal(mean[1], 2.5)
  assert mean[0].dtype == np.float32
  for other in ([b[0]], [b[0], np.zeros(4, np.float32)]):
    with pytest.raises(ValueError, match="architecture"):
      soup.average_weights([a, other])


def test_finetune_runs_below_one_is_refused():
  from pipeline.errors import PipelineError  # pylint: disable=g-import-not-at-top
  with pytest.raises(PipelineError, match="--finetune_runs=0 must be >= 1"):
    _soup_config(0)
