"""Classification metrics on predicted probabilities (a thin layer over scikit-learn), and the
one bootstrap every interval of the pipeline is drawn with."""

from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
from sklearn import metrics as skm

MALIGNANT = ("mel", "bcc", "akiec")


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
  """cm[i, j] = number of items of true class i predicted as j (scikit-learn's)."""
  return skm.confusion_matrix(y_true, y_pred, labels=np.arange(num_classes)).astype(np.int64)


def per_class(cm: np.ndarray) -> Dict[str, np.ndarray]:
  """Precision, recall and F1 per class (0 where undefined, e.g. a class never predicted),
  scikit-learn's, from a confusion matrix."""
  k = len(cm)
  y_true = np.repeat(np.repeat(np.arange(k), k), cm.ravel())
  y_pred = np.repeat(np.tile(np.arange(k), k), cm.ravel())
  precision, recall, f1, support = skm.precision_recall_fscore_support(
      y_true, y_pred, labels=np.arange(k), zero_division=0)
  return {"precision": precision, "recall": recall, "f1": f1, "support": support}


def balanced_accuracy(cm: np.ndarray) -> float:
  """Mean recall over the classes present in the ground truth (scikit-learn's definition)."""
  support = cm.sum(axis=1)
  present = support > 0
  if not present.any():
    return 0.0
  return float((np.diag(cm)[present] / support[present]).mean())


def argmax_balanced_accuracy(y_true: np.ndarray, scores: np.ndarray) -> float:
  """Balanced accuracy of the top-1 of per-class scores [N, K] (probabilities, logits or
  offset log-probabilities)."""
  return balanced_accuracy(confusion_matrix(y_true, scores.argmax(axis=1), scores.shape[1]))


def top_k_accuracy(y_true: np.ndarray, probs: np.ndarray, k: int) -> float:
  """Share of items whose true class is among the k highest probabilities."""
  k = min(k, probs.shape[1])
  top = np.argsort(-probs, axis=1, kind="stable")[:, :k]
  return float((top == np.asarray(y_true)[:, None]).any(axis=1).mean())


def group_sensitivity(cm: np.ndarray, labels: Sequence[str],
                      group: Sequence[str] = MALIGNANT) -> Optional[float]:
  """Share of items of the group's classes predicted as any class of the group.

  For triage, calling a melanoma a BCC still sends the patient to a doctor, so this is
  the recall of "malignant" as one class. None if the labels hold none of the group.
  """
  idx = [i for i, label in enumerate(labels) if label in group]
  if not idx:
    return None
  total = cm[idx, :].sum()
  return float(cm[np.ix_(idx, idx)].sum() / total) if total else None


def top1_margin(probs: np.ndarray) -> np.ndarray:
  """Highest minus second-highest probability per item: how close a prediction is to a tie."""
  top2 = np.sort(probs, axis=1)[:, -2:]
  return top2[:, 1] - top2[:, 0]


def disagreement_margins(reference_probs: np.ndarray, y_pred: np.ndarray) -> dict:
  """How confident the reference was where a candidate's top-1 differs from it.

  Quantization flips near-ties first; a flip where the reference was sure is a real defect.
  Returns the number of disagreements and the largest and median reference top-1 margin
  among them (None without disagreements).
  """
  margin = top1_margin(reference_probs)[reference_probs.argmax(axis=1) != np.asarray(y_pred)]
  return {"disagreements": int(margin.size),
          "disagreement_max_reference_margin": float(margin.max()) if margin.size else None,
          "disagreement_median_reference_margin":
              float(np.median(margin)) if margin.size else None}


def resamples(strata: np.ndarray, rounds: int, seed: int) -> np.ndarray:
  """Bootstrap resamples [rounds, N] of indices into N items, drawn with replacement within
  each stratum (every stratum keeps its size; one stratum: the plain bootstrap)."""
  rng = np.random.default_rng(seed)
  strata = np.asarray(strata)
  out = np.empty((rounds, len(strata)), np.int64)
  for value in np.unique(strata):
    idx = np.flatnonzero(strata == value)
    out[:, idx] = idx[rng.integers(0, len(idx), (rounds, len(idx)))]
  return out


def interval(values) -> List[float]:
  """The 95% percentile interval [2.5th, 97.5th] of bootstrap values."""
  return [float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))]


def bootstrap_ci(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int,
                 rounds: int = 1000, seed: int = 0) -> Dict[str, list]:
  """95% percentile-bootstrap intervals for accuracy and balanced accuracy."""
  y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
  draws = resamples(np.zeros(len(y_true)), rounds, seed)
  stat: Callable[[np.ndarray], float] = lambda idx: balanced_accuracy(
      confusion_matrix(y_true[idx], y_pred[idx], num_classes))
  return {"accuracy": interval((y_true[draws] == y_pred[draws]).mean(axis=1)),
          "balanced_accuracy": interval([stat(idx) for idx in draws])}


def classification_report(y_true: np.ndarray, probs: np.ndarray, labels: Sequence[str],
                          reference_probs: Optional[np.ndarray] = None,
                          bootstrap_rounds: int = 0, seed: int = 0) -> dict:
  """Every metric the build and the accuracy benchmark report.

  Args:
    y_true: true class indices [N].
    probs: predicted probabilities [N, K], in `labels` order.
    labels: class names.
    reference_probs: a reference model's probabilities on the same items (the float
      model) for agreement and probability drift.
    bootstrap_rounds: 0 skips confidence intervals.
    seed: bootstrap seed.

  Returns:
    A JSON-ready dict.
  """
  y_true = np.asarray(y_true)
  y_pred = probs.argmax(axis=1)
  k = len(labels)
  cm = confusion_matrix(y_true, y_pred, k)
  pc = per_class(cm)
  report = {
      "n": int(len(y_true)),
      "accuracy": float((y_pred == y_true).mean()) if len(y_true) else 0.0,
      "top2_accuracy": top_k_accuracy(y_true, probs, 2),
      "top3_accuracy": top_k_accuracy(y_true, probs, 3),
      "balanced_accuracy": balanced_accuracy(cm),
      "per_class_recall": {l: float(pc["recall"][i]) for i, l in enumerate(labels)},
      "per_class_precision": {l: float(pc["precision"][i]) for i, l in enumerate(labels)},
      "per_class_f1": {l: float(pc["f1"][i]) for i, l in enumerate(labels)},
      "support": {l: int(pc["support"][i]) for i, l in enumerate(labels)},
      "malignant_sensitivity": group_sensitivity(cm, labels),
      "confusion_matrix": cm.tolist(),
  }
  if reference_probs is not None:
    report["top1_agreement"] = float((reference_probs.argmax(axis=1) == y_pred).mean())
    report["mean_abs_prob_diff"] = float(np.abs(reference_probs - probs).mean())
    report.update(disagreement_margins(reference_probs, y_pred))
  if bootstrap_rounds:
    report["ci95"] = bootstrap_ci(y_true, y_pred, k, bootstrap_rounds, seed)
  return report
