"""android_assets/ is replaced atomically (a killed or failed build leaves the old one), and
what the model card says of the referral threshold."""

import os
import signal
import subprocess
import sys
import time

import pytest

from pipeline import assets
from pipeline import labels as labels_lib
from pipeline import report as report_lib
from tests.conftest import REPO

CHILD = """
import sys, time
sys.path.insert(0, {repo!r})
from pipeline import assets
def hang(*args, **kwargs):  # model.tflite is in the staging folder now; wait to be killed.
  open({marker!r}, "w").close()
  time.sleep(600)
assets.labels_lib.write_labels = hang
assets.write_assets({target!r}, b"new-model", ["a", "b"], "card", "readme")
"""


def _old_assets(path):
  assets.write_assets(str(path), b"old-model", ["old_a", "old_b"], "old card", "old readme")
  return {n: open(os.path.join(path, n), "rb").read() for n in os.listdir(path)}


def test_killed_during_assets_leaves_old_assets_intact(tmp_path):
  target = tmp_path / "android_assets"
  before = _old_assets(target)
  marker = tmp_path / "mid-write"
  proc = subprocess.Popen([sys.executable, "-c",
                           CHILD.format(repo=REPO, target=str(target), marker=str(marker))])
  deadline = time.time() + 120
  while not marker.exists() and proc.poll() is None and time.time() < deadline:
    time.sleep(0.01)
  assert marker.exists(), "the child never reached the middle of write_assets"
  staging = [n for n in os.listdir(tmp_path) if n.startswith(".android_assets.new-")]
  assert os.path.exists(tmp_path / staging[0] / "model.tflite")  # Killed mid-way, for real.
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert proc.returncode == -signal.SIGKILL
  after = {n: open(os.path.join(target, n), "rb").read() for n in os.listdir(target)}
  assert after == before
  # The next successful build replaces it and leaves no staging debris behind.
  assets.write_assets(str(target), b"new", ["a"], "c", "r")
  assert open(target / "model.tflite", "rb").read() == b"new"
  assert not [n for n in os.listdir(tmp_path) if n.startswith(".android_assets")]


def test_failure_inside_assets_keeps_old_assets(tmp_path):
  target = tmp_path / "android_assets"
  before = _old_assets(target)
  with pytest.raises(TypeError):
    assets.write_assets(str(target), "not-bytes", ["a"], "card", "readme")
  assert {n: open(os.path.join(target, n), "rb").read() for n in os.listdir(target)} == before


def test_written_files_get_the_mode_open_would_give(tmp_path):
  from pipeline import atomic
  umask = os.umask(0)
  os.umask(umask)
  atomic.write_text(str(tmp_path / "a.txt"), "x")  # Not mkstemp's 0600.
  atomic.write_with(str(tmp_path / "b.npy"), lambda p: open(p, "w").write("y"))
  assert os.stat(tmp_path / "a.txt").st_mode & 0o777 == 0o666 & ~umask
  assert os.stat(tmp_path / "b.npy").st_mode & 0o777 == 0o666 & ~umask


@pytest.mark.parametrize("data_format, names_ham10000", [
    ("ham10000", True), ("hmnist_csv", True), ("folders", False), ("synthetic", False)])
def test_model_license_names_ham10000_only_for_its_data(data_format, names_ham10000):
  """A DermNet or eczema build's metadata must not claim HAM10000's licence as its own."""
  texts = labels_lib.metadata_defaults(data_format)
  assert ("HAM10000: CC BY-NC 4.0" in texts["license"]) == names_ham10000, texts["license"]


def test_the_card_says_when_the_referral_threshold_cannot_keep_its_promise():
  referral = {"score": "sum of the probabilities of mel", "threshold": 0.25,
              "fit_on": "int8 model's scores on the validation split", "target_sensitivity": 0.9,
              "enough_cases": True, "validation": {"sensitivity": 0.915, "positives": 71},
              "test": {"int8": {"sensitivity": 0.8, "specificity": 0.85, "roc_auc": 0.9}}}
  text = "\n".join(report_lib.referral_section(referral))
  assert "to refer 90% of new serious cases like them (it referred 91.5% of its 71" in text
  assert "too few" not in text
  few = {**referral, "enough_cases": False, "validation": {"sensitivity": 1.0, "positives": 5}}
  assert "too few for that promise, so it refers all of them" in "\n".join(
      report_lib.referral_section(few))
