"""Test session setup: Keras 2, two logical CPU devices (for MirroredStrategy), a shared build."""

import os
import sys

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

from pipeline.tf_compat import tf  # noqa: E402

# Logical devices must be declared before TensorFlow initializes its runtime.
_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    _cpus[0], [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.hookimpl(tryfirst=True)  # Before xdist reads the groups from the markers.
def pytest_collection_modifyitems(items):
  """Under pytest-xdist (`make test` runs two workers with --dist=loadgroup), every test of the
  shared smoke build runs on one worker, so the build is made once; the rest spread freely."""
  for item in items:
    if "built" in getattr(item, "fixturenames", ()):
      item.add_marker(pytest.mark.xdist_group("smoke_build"))


@pytest.fixture(scope="session")
def built(tmp_path_factory):
  """One full smoke build through the real entry function, shared by the e2e tests."""
  from pipeline import config as config_lib
  from pipeline import stages
  out = str(tmp_path_factory.mktemp("build"))
  # Red stands in for a serious class, so the build fits and ships a referral threshold.
  cfg = config_lib.smoke_config(referral=config_lib.ReferralConfig(malignant_classes=("red",)))
  run = config_lib.smoke_run(out)
  report = stages.run(cfg, run)
  return cfg, run, report


def run_cli(args, timeout=600, env=None):
  """Runs `python -m ...` from the repo root; returns the CompletedProcess."""
  import subprocess
  full_env = dict(os.environ, PYTHONPATH=REPO, **(env or {}))
  return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True,
                        timeout=timeout, env=full_env, check=False)
