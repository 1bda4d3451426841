"""deterministic=true: two builds with the same seed train bit-identical models."""

import json
import os

import numpy as np

from pipeline.tf_compat import keras
from tests.conftest import run_cli

# Augmentation on, so the random augmentation stream is covered too. Each build runs in its
# own process: op determinism is process-wide and cannot be switched off again.
_FLAGS = ["--data_format=synthetic", "--set=data.synthetic_classes=3",
          "--set=data.synthetic_per_class=30",
          "--image_size=32", "--alpha=0.35", "--weights=none", "--transfer_epochs=2",
          "--finetune_epochs=2", "--finetune_layers=154", "--batch_size=16",
          "--stop_after=finetune", "--seed=7"]


def _build(out: str, *extra: str) -> list:
  proc = run_cli(["-m", "pipeline.build", *_FLAGS, f"--output_dir={out}", *extra])
  assert proc.returncode == 0, proc.stderr[-2000:]
  return keras.models.load_model(os.path.join(out, "model_float.keras"),
                                 compile=False).get_weights()


def test_deterministic_builds_train_identical_weights(tmp_path):
  first = _build(str(tmp_path / "a"), "--set=deterministic=true")
  second = _build(str(tmp_path / "b"), "--set=deterministic=true")
  for a, b in zip(first, second):
    np.testing.assert_array_equal(a, b)
  with open(tmp_path / "a" / "config.json", encoding="utf-8") as f:
    assert json.load(f)["deterministic"] is True
  # Training ran and moved the weights (identical because deterministic, not because nothing
  # ran): the fine-tuned model differs from the transfer phase's saved weights.
  transferred = keras.models.load_model(os.path.join(tmp_path, "a", "model_float.keras"),
                                        compile=False)
  transferred.load_weights(os.path.join(tmp_path, "a", "checkpoints",
                                        "transfer_final_weights")).expect_partial()
  assert any(not np.array_equal(a, b) for a, b in zip(first, transferred.get_weights()))
