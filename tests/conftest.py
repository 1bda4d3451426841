"""Test session setup: Keras 2, two logical CPU devices (for MirroredStrategy), a shared build.

`make test-fast` (PIPELINE_FAST_TESTS=1, `-m fast`) runs the modules marked `fast`: they
train and convert nothing and never import TensorFlow, so the session does not either.
"""

import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAST_ONLY = os.environ.get("PIPELINE_FAST_TESTS") == "1"

if FAST_ONLY:
  sys.modules.setdefault("tensorflow", None)  # A fast test that imports it fails loudly.
else:
  os.environ["TF_USE_LEGACY_KERAS"] = "1"
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  from pipeline.tf_compat import tf  # pylint: disable=g-import-not-at-top
  # Logical devices must be declared before TensorFlow initializes its runtime.
  _cpus = tf.config.list_physical_devices("CPU")
  tf.config.set_logical_device_configuration(
      _cpus[0], [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])


def pytest_ignore_collect(collection_path, config):
  """Fast mode does not even import a module that is not marked fast as a whole (it may import
  TensorFlow)."""
  del config
  name = collection_path.name
  if FAST_ONLY and name.startswith("test_") and name.endswith(".py"):
    return "pytestmark = pytest.mark.fast" not in collection_path.read_text(encoding="utf-8")
  return None


def pytest_configure(config):
  config.addinivalue_line("markers", "fast: trains and converts nothing, imports no TensorFlow "
                          "(make test-fast)")


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
  from pipeline import config as config_lib  # pylint: disable=g-import-not-at-top
  from pipeline import stages  # pylint: disable=g-import-not-at-top
  out = str(tmp_path_factory.mktemp("build"))
  # Red stands in for a serious class, so the build fits and ships a referral threshold.
  cfg = config_lib.smoke_config(referral=config_lib.ReferralConfig(malignant_classes=("red",)))
  run = config_lib.smoke_run(out)
  report = stages.run(cfg, run)
  return cfg, run, report


def run_cli(args, timeout=600, env=None):
  """Runs `python -m ...` from the repo root; returns the CompletedProcess."""
  import subprocess  # pylint: disable=g-import-not-at-top
  full_env = dict(os.environ, PYTHONPATH=REPO, **(env or {}))
  return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True,
                        timeout=timeout, env=full_env, check=False)
