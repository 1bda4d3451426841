"""Imports TensorFlow with legacy Keras 2 (tf_keras), which tensorflow-model-optimization needs."""

import os
import sys

if "tensorflow" in sys.modules and os.environ.get("TF_USE_LEGACY_KERAS") != "1":
  # tf.keras is bound to Keras 3 at TensorFlow import time; tfmot would then fail
  # with obscure errors much later, so refuse early.
  raise ImportError(
      "TensorFlow was imported before pipeline.tf_compat without TF_USE_LEGACY_KERAS=1; "
      "import pipeline modules first or export TF_USE_LEGACY_KERAS=1.")
os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from pipeline import quiet  # noqa: E402  pylint: disable=g-import-not-at-top

# Importing TensorFlow and its first look at the devices print CUDA, cuDNN and XLA
# registration lines a CPU user cannot act on.
with quiet.native_stderr():
  import tensorflow as tf  # noqa: E402  pylint: disable=g-import-not-at-top
  import tf_keras as keras  # noqa: E402  pylint: disable=g-import-not-at-top
  tf.config.list_physical_devices()

tf.get_logger().setLevel("ERROR")

__all__ = ["tf", "keras"]
