"""A build killed part-way through a phase resumes there and finishes with the same labels."""

import json
import os
import signal
import subprocess
import sys
import time

from pipeline import labels as labels_lib
from tests.conftest import REPO

FLAGS = ["--data_format=synthetic", "--synthetic_classes=3", "--synthetic_per_class=30",
         "--image_size=32", "--alpha=0.35", "--weights=none", "--transfer_epochs=2",
         "--finetune_epochs=6", "--finetune_layers=154", "--finetune_lr=0.0003",
         "--qat_epochs=1", "--qat_lr=0.00001", "--batch_size=16", "--noaugment",
         "--calibration_images=32", "--stop_after=qat"]


def _start(out, *extra):
  return subprocess.Popen(
      [sys.executable, "-m", "pipeline.build", *FLAGS, f"--output_dir={out}",
       f"--assets_dir={out}/assets", *extra], cwd=REPO, stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT, text=True, env=dict(os.environ, PYTHONPATH=REPO))


def test_kill_mid_finetune_then_resume(tmp_path):
  out = str(tmp_path / "build")
  state = os.path.join(out, "checkpoints", "finetune", "state.json")
  proc = _start(out)
  deadline = time.time() + 300
  killed_after = 0
  while time.time() < deadline and proc.poll() is None:
    try:
      with open(state) as f:
        killed_after = json.load(f)["epochs_done"]
    except (OSError, ValueError, KeyError):
      killed_after = 0
    if killed_after >= 2:
      proc.send_signal(signal.SIGKILL)
      break
    time.sleep(0.02)
  proc.wait(timeout=60)
  assert proc.returncode == -signal.SIGKILL, proc.stdout.read()
  assert 2 <= killed_after < 6
  labels_before = labels_lib.read_labels(os.path.join(out, "labels.txt"))
  splits_before = open(os.path.join(out, "splits.csv")).read()
  assert not os.path.exists(os.path.join(out, "model_float.keras"))  # Died inside finetune.

  resumed = _start(out, "--resume")
  log, _ = resumed.communicate(timeout=600)
  assert resumed.returncode == 0, log
  line = next(l for l in log.splitlines() if "finetune: resuming after epoch" in l)
  resumed_at = int(line.split("after epoch ")[1].split("/")[0])
  assert killed_after <= resumed_at < 6
  assert "transfer epoch" not in log  # The finished phase was not repeated.
  assert labels_lib.read_labels(os.path.join(out, "labels.txt")) == labels_before
  assert open(os.path.join(out, "splits.csv")).read() == splits_before
  for name in ("model_float.keras", "checkpoints/qat_final_weights.index", "flags.txt", "report.json",
               "training_curves.png"):
    assert os.path.exists(os.path.join(out, name)), name
  report = json.load(open(os.path.join(out, "report.json")))
  finetune = report["training"]["finetune"]
  assert len(finetune["history"]["loss"]) == 6  # Epochs before and after the kill.
  assert finetune["resumed_from_epoch"] == resumed_at
  assert set(report["training"]) == {"transfer", "finetune", "qat"}
