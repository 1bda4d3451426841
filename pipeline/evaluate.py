"""Evaluate stage and parity gate: TFLite models on the test split through LiteRT."""

import dataclasses
from typing import Dict, Sequence

import numpy as np

from pipeline import metrics
from pipeline.errors import PipelineError
from pipeline.preprocessing import Normalization
from pipeline.runner import LiteRunner


def evaluate_models(models: Dict[str, bytes], pixels: np.ndarray, y_true: np.ndarray,
                    labels: Sequence[str], normalization: Normalization,
                    reference: str = "float32", bootstrap_rounds: int = 1000,
                    seed: int = 0) -> Dict[str, dict]:
  """Runs every model on the same images with the LiteRT interpreter.

  Args:
    models: {variant: tflite bytes}; must contain `reference`.
    pixels: uint8 test images [N, S, S, 3].
    y_true: true class indices.
    labels: class names in output order.
    normalization: the models' input normalization.
    reference: the variant the others are compared with.
    bootstrap_rounds: for 95% intervals (0 to skip).
    seed: bootstrap seed.

  Returns:
    {variant: metrics.classification_report(...) plus "size_bytes"}.
  """
  probs = {name: align_to_labels(LiteRunner(blob, normalization).predict(pixels),
                                 embedded_labels(blob), labels, name)
           for name, blob in models.items()}
  ref = probs.get(reference)
  out = {}
  for name, p in probs.items():
    out[name] = metrics.classification_report(
        y_true, p, labels, reference_probs=None if name == reference else ref,
        bootstrap_rounds=bootstrap_rounds, seed=seed)
    out[name]["size_bytes"] = len(models[name])
  return out


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


@dataclasses.dataclass(frozen=True)
class GateResult:
  """The parity gate's figures and verdict."""
  passed: bool
  top1_agreement: float
  balanced_accuracy_drop: float
  min_top1_agreement: float
  max_balanced_accuracy_drop: float

  def message(self) -> str:
    verdict = "passed" if self.passed else "FAILED"
    return (f"parity gate {verdict}: int8 vs float32 top-1 agreement "
            f"{self.top1_agreement:.4f} (min {self.min_top1_agreement:.4f}), balanced accuracy "
            f"drop {self.balanced_accuracy_drop * 100:+.2f} points (max "
            f"{self.max_balanced_accuracy_drop * 100:.2f})")


def parity_gate(candidate: dict, reference: dict, min_top1_agreement: float,
                max_balanced_accuracy_drop: float) -> GateResult:
  """Compares a candidate's metrics with the reference's (both from `evaluate_models`).

  Args:
    candidate: the int8 model's report (holds top1_agreement with the reference).
    reference: the float32 model's report.
    min_top1_agreement: e.g. 0.98.
    max_balanced_accuracy_drop: e.g. 0.01 (one point).

  Returns:
    The verdict with its figures.
  """
  drop = reference["balanced_accuracy"] - candidate["balanced_accuracy"]
  agreement = candidate["top1_agreement"]
  return GateResult(passed=agreement >= min_top1_agreement and
                    drop <= max_balanced_accuracy_drop + 1e-12,
                    top1_agreement=agreement, balanced_accuracy_drop=drop,
                    min_top1_agreement=min_top1_agreement,
                    max_balanced_accuracy_drop=max_balanced_accuracy_drop)


def check_gate(result: GateResult) -> None:
  """Raises PipelineError when the gate failed, with the figures and thresholds."""
  if not result.passed:
    raise PipelineError(result.message() + "; android_assets/ was not updated. Train longer "
                        "(--qat_epochs), check the export, or relax --gate_min_agreement / "
                        "--gate_max_bacc_drop deliberately")
