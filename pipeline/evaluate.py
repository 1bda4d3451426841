"""Evaluate stage: TFLite models on the test split through LiteRT, scored and compared."""

from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from pipeline import metrics
from pipeline import parity
from pipeline.errors import PipelineError
from pipeline.preprocessing import Normalization
from pipeline.runner import LiteRunner


def predict_models(models: Dict[str, bytes], pixels: np.ndarray, labels: Sequence[str],
                   normalization: Normalization) -> Dict[str, np.ndarray]:
  """Every model's probabilities on the same images through LiteRT, in `labels` order.

  Args:
    models: {variant: tflite bytes}.
    pixels: uint8 images [N, S, S, 3].
    labels: class names in the order wanted.
    normalization: the models' input normalization.

  Returns:
    {variant: probabilities [N, K]}, columns mapped by each model's embedded labels.
  """
  return {name: align_to_labels(LiteRunner(blob, normalization).predict(pixels),
                                embedded_labels(blob), labels, name)
          for name, blob in models.items()}


def score_models(probs: Dict[str, np.ndarray], y_true: np.ndarray, labels: Sequence[str],
                 keys: Optional[Sequence[str]] = None, reference: str = "float32",
                 bootstrap_rounds: int = 1000, paired_rounds: int = 2000,
                 seed: int = 0) -> Dict[str, dict]:
  """Metrics of every model, and each one's paired comparison with `reference`.

  Args:
    probs: {variant: probabilities [N, K]} on the same images; must contain `reference`.
    y_true: true class indices.
    labels: class names in column order.
    keys: image ids (named in the flip lists).
    reference: the variant the others are compared with.
    bootstrap_rounds: for each model's 95% intervals (0 to skip).
    paired_rounds: for the paired drop's interval.
    seed: bootstrap seed.

  Returns:
    {variant: metrics.classification_report(...), plus "paired" (parity.paired_comparison)
    for every variant but the reference}.
  """
  ref = probs[reference]
  out = {}
  for name, p in probs.items():
    is_ref = name == reference
    out[name] = metrics.classification_report(
        y_true, p, labels, reference_probs=None if is_ref else ref,
        bootstrap_rounds=bootstrap_rounds, seed=seed)
    if not is_ref:
      out[name]["paired"] = parity.paired_comparison(y_true, ref, p, labels, keys,
                                                     paired_rounds, seed)
  return out


def evaluate_models(models: Dict[str, bytes], pixels: np.ndarray, y_true: np.ndarray,
                    labels: Sequence[str], normalization: Normalization,
                    keys: Optional[Sequence[str]] = None, reference: str = "float32",
                    bootstrap_rounds: int = 1000, paired_rounds: int = 2000,
                    seed: int = 0) -> Tuple[Dict[str, dict], Dict[str, np.ndarray]]:
  """`score_models` of `predict_models`, with each model's "size_bytes".

  Returns:
    ({variant: scores}, {variant: probabilities}) so callers can reuse the predictions.
  """
  probs = predict_models(models, pixels, labels, normalization)
  out = score_models(probs, y_true, labels, keys, reference, bootstrap_rounds, paired_rounds,
                     seed)
  for name, blob in models.items():
    out[name]["size_bytes"] = len(blob)
  return out, probs


def embedded_labels(tflite: bytes):
  """The labels packed in a model's metadata, or None for a model without metadata."""
  from pipeline import tflite_metadata  # pylint: disable=g-import-not-at-top
  try:
    return tflite_metadata.read(tflite)["labels"]
  except PipelineError:
    return None


def align_to_labels(probs: np.ndarray, model_labels, labels: Sequence[str],
                    where: str) -> np.ndarray:
  """Reorders a model's output columns from its own label order into `labels` order.

  Scoring by name, not by index, is what makes a model whose embedded label order is wrong
  score badly (as it would in an app) instead of silently matching the float model.

  Raises:
    PipelineError: the model's labels are not the dataset's labels.
  """
  if model_labels is None:
    return probs
  if sorted(model_labels) != sorted(labels):
    raise PipelineError(f"{where}: its embedded labels {list(model_labels)} are not the "
                        f"dataset's labels {list(labels)}")
  return probs[:, [list(model_labels).index(l) for l in labels]]
