"""A built .tflite as an app uses it: labels and display names from its metadata, the
referral threshold from the referral.json fit for this very file. Used by predict and serve.

TensorFlow-free: the LiteRT interpreter and the metadata reader only.
"""

from typing import BinaryIO, List, Optional, Union

import numpy as np

from pipeline import images as images_lib
from pipeline import referral as referral_lib
from pipeline.runner import RunnerPool, load_model_file


class Classifier:
  """Classifies images with one model file.

  Attributes:
    meta: the model's metadata (name, version, labels, display_names, sha256, ...).
    labels: class names in output order.
    names: display names (the labels where the model has none).
    referral: the referral.json fit for this file, or None.
    image_size: the model's input height and width.
  """

  def __init__(self, model_path: str, concurrency: int = 1):
    """Loads the model with `concurrency` interpreters, one per thread that may classify at
    the same time (a web server's worker threads).

    Raises:
      PipelineError: the model cannot be read.
    """
    self.runner, self.meta = load_model_file(model_path)
    self._pool = RunnerPool(self.runner, concurrency)
    self.labels: List[str] = list(self.meta["labels"])
    self.names: List[str] = list(self.meta["display_names"] or self.labels)
    self.referral: Optional[dict] = (referral_lib.load_for_model(model_path, self.meta["sha256"])
                                     if self.meta["sha256"] else None)
    self.image_size: int = self.runner.image_size

  def probabilities(self, pixels: np.ndarray) -> np.ndarray:
    """Class probabilities [N, classes] for uint8 pixels [N, size, size, 3]; thread-safe."""
    return self._pool.predict(pixels)

  def classify(self, pixels: np.ndarray, top_k: int) -> dict:
    """One image's top-k and referral decision.

    Returns:
      {"top": [{"label", "display_name", "score"}, ...], "refer": bool, or None without a
      referral threshold for this model, "referral_score": float or None}.
    """
    probs = self.probabilities(pixels[None])[0]
    order = np.argsort(-probs, kind="stable")[:top_k]
    score = None
    if self.referral:
      score = float(referral_lib.serious_score(probs[None], self.labels,
                                               self.referral["classes"])[0])
    return {"top": [{"label": self.labels[i], "display_name": self.names[i],
                     "score": float(probs[i])} for i in order],
            "refer": None if score is None else score >= self.referral["threshold"],
            "referral_score": score}

  def classify_image(self, source: Union[str, BinaryIO], top_k: int) -> dict:
    """Decodes and resizes an image file (or upload), then `classify`.

    Raises:
      images.ImageError: not a usable image; the message says why.
    """
    pixels, _ = images_lib.load_rgb(source, self.image_size)
    return self.classify(pixels, top_k)
