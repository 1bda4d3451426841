"""The referral operating point: refer a photo when the summed probability of the serious
classes reaches a threshold fit on the validation split for a target sensitivity on new
photos (the split-conformal rank of the validation split's serious cases)."""

import functools
import math
import os
from typing import Dict, Sequence

import numpy as np

from pipeline.errors import PipelineError
from pipeline.shipped import REFERRAL_FILE

FILE_NAME = REFERRAL_FILE


def serious_score(probs: np.ndarray, labels: Sequence[str], classes: Sequence[str]) -> np.ndarray:
  """P(any serious class) per image: the sum of those classes' probabilities [N]."""
  return probs[:, [list(labels).index(c) for c in classes]].sum(axis=1)


@functools.lru_cache(maxsize=None)  # Pure; the Beta search runs once per (n, s, c).
def conformal_rank(positives: int, sensitivity: float, confidence: float = 0.0) -> int:
  """How many of `positives` validation serious cases, highest score first, a threshold must
  refer for a new serious photo to be referred with probability >= `sensitivity`:
  ceil(sensitivity x (positives + 1)), the split-conformal rank (Vovk et al. 2005; Angelopoulos
  and Bates 2021, "A gentle introduction to conformal prediction", section 1), for photos
  exchangeable with the validation ones. Referring ceil(sensitivity x positives) instead, the
  share asked of the validation split itself, falls short on new photos: on average
  ceil(s n) / (n + 1) of them are referred, 88.9% for 90% of 71 (BUILD.md, "The referral
  threshold"). More than `positives` when there are too few for the promise.

  That promise is on average over validation draws: referring the k-th highest of n, the
  share of new serious photos referred is Beta(k, n + 1 - k), whose mean is k / (n + 1). With
  `confidence` > 0 the rank is the smallest k whose share reaches `sensitivity` in that share
  of draws (a margin that costs specificity)."""
  if confidence <= 0:
    return math.ceil(sensitivity * (positives + 1) - 1e-9)  # 0.56 x 25 is 14.000000000000002.
  from scipy import stats  # pylint: disable=g-import-not-at-top
  for k in range(1, positives + 1):
    if stats.beta.sf(sensitivity, k, positives + 1 - k) >= confidence:
      return k
  return positives + 1


def fit_threshold(scores: np.ndarray, positive: np.ndarray, sensitivity: float,
                  confidence: float = 0.0) -> float:
  """The highest threshold that refers the `conformal_rank` highest-scoring positives (all of
  them when there are too few for the guarantee).

  The highest such threshold refers the fewest negatives for the sensitivity asked.

  Raises:
    PipelineError: no positive image to fit on.
  """
  pos = np.sort(scores[positive])[::-1]
  if not len(pos):
    raise PipelineError("the validation split has no image of the serious classes; the "
                        "referral threshold cannot be fit (give --malignant_classes= to skip it)")
  return float(pos[min(conformal_rank(len(pos), sensitivity, confidence), len(pos)) - 1])


def operating_point(scores: np.ndarray, positive: np.ndarray, threshold: float) -> Dict[str, float]:
  """Sensitivity and specificity of `score >= threshold` (None where a side has no image)."""
  refer = scores >= threshold
  pos, neg = positive.sum(), (~positive).sum()
  return {"sensitivity": float(refer[positive].mean()) if pos else None,
          "specificity": float((~refer[~positive]).mean()) if neg else None,
          "positives": int(pos), "negatives": int(neg)}


def _bootstrap(scores: np.ndarray, positive: np.ndarray, threshold: float, rounds: int,
               seed: int) -> Dict[str, list]:
  """95% intervals of sensitivity, specificity and ROC AUC, resampling positives and
  negatives separately (their counts are fixed by the split)."""
  from scipy import stats  # pylint: disable=g-import-not-at-top
  from pipeline import metrics  # pylint: disable=g-import-not-at-top
  draws = scores[metrics.resamples(positive, rounds, seed)]
  p, n = draws[:, positive], draws[:, ~positive]  # Each side keeps its size.
  # ROC AUC is the Mann-Whitney U of positives against negatives over the pairs (ties half).
  auc = stats.mannwhitneyu(p, n, axis=1, method="asymptotic").statistic / (p.shape[1] * n.shape[1])
  return {"sensitivity": metrics.interval((p >= threshold).mean(axis=1)),
          "specificity": metrics.interval((n < threshold).mean(axis=1)),
          "roc_auc": metrics.interval(auc)}


def evaluate(val_probs: Dict[str, np.ndarray], val_true: np.ndarray,
             test_probs: Dict[str, np.ndarray], test_true: np.ndarray, labels: Sequence[str],
             classes: Sequence[str], sensitivity: float, shipped: str = "int8",
             bootstrap_rounds: int = 1000, seed: int = 0, confidence: float = 0.0) -> dict:
  """Fits the threshold on the shipped model's validation scores, then scores every model.

  The threshold belongs to the shipped model (an app computes the score from its outputs);
  the other models are scored at the same threshold, so QA sees what quantization did to
  the referral decision.

  Args:
    val_probs: {model: probabilities on the validation split}; must hold `shipped`.
    val_true: validation class indices.
    test_probs: {model: probabilities on the test split}.
    test_true: test class indices.
    labels: class names, the probabilities' column order.
    classes: the serious classes.
    sensitivity: the target probability that a new serious photo is referred.
    shipped: the model the threshold is fit for.
    bootstrap_rounds: for the 95% intervals.
    seed: bootstrap seed.

  Returns:
    A JSON-ready dict: classes, threshold, target_sensitivity, confidence, promise (what the
    threshold promises, in words), enough_cases (enough serious
    validation images for the conformal rank), validation (the shipped model's operating point
    there) and test {model: sensitivity, specificity, roc_auc, ci95}.
  """
  from sklearn.metrics import roc_auc_score  # pylint: disable=g-import-not-at-top
  serious = [labels.index(c) for c in classes]
  val_pos, test_pos = np.isin(val_true, serious), np.isin(test_true, serious)
  val_scores = serious_score(val_probs[shipped], labels, classes)
  threshold = fit_threshold(val_scores, val_pos, sensitivity, confidence)
  test = {}
  for name, probs in test_probs.items():
    scores = serious_score(probs, labels, classes)
    point = operating_point(scores, test_pos, threshold)
    both = test_pos.any() and (~test_pos).any()
    point["roc_auc"] = float(roc_auc_score(test_pos, scores)) if both else None
    if both and bootstrap_rounds:
      point["ci95"] = _bootstrap(scores, test_pos, threshold, bootstrap_rounds, seed)
    test[name] = point
  return {"classes": list(classes), "score": "sum of the probabilities of " + ", ".join(classes),
          "refer_if": "score >= threshold", "threshold": threshold,
          "target_sensitivity": sensitivity, "shipped_model": shipped,
          "fit_on": f"{shipped} model's scores on the validation split",
          "confidence": confidence, "promise": promise(sensitivity, confidence),
          # Whether the validation split has enough serious cases for that promise.
          "enough_cases": bool(conformal_rank(int(val_pos.sum()), sensitivity, confidence)
                               <= val_pos.sum()),
          "validation": operating_point(val_scores, val_pos, threshold), "test": test}


def promise(sensitivity: float, confidence: float) -> str:
  """What a threshold fit by `conformal_rank` promises, in words."""
  when = ("on average over validation draws" if confidence <= 0 else
          f"in {confidence:.0%} of validation draws")
  return (f"refers at least {sensitivity:.0%} of new serious cases {when}, for cases like the "
          "validation ones (the same kind of photos, never used for a decision)")


def parity_sentence(referral: dict, reference: str = "float32") -> str:
  """The shipped model's sensitivity at its threshold next to the reference's, for the gate."""
  shipped, test = referral["shipped_model"], referral["test"]
  return (f"At the shipped referral threshold ({referral['threshold']:.3f}) the {shipped} model "
          f"refers {test[shipped]['sensitivity']:.1%} of the serious test cases, {reference} "
          f"{test[reference]['sensitivity']:.1%}.")


def plot_roc(test_probs: Dict[str, np.ndarray], test_true: np.ndarray, labels: Sequence[str],
             referral: dict, path: str) -> None:
  """ROC curves of the serious-class score on the test split, with the shipped threshold."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  from sklearn.metrics import roc_curve  # pylint: disable=g-import-not-at-top
  from pipeline import atomic  # pylint: disable=g-import-not-at-top
  positive = np.isin(test_true, [labels.index(c) for c in referral["classes"]])
  fig, ax = plt.subplots(figsize=(5, 5))
  for name, probs in test_probs.items():
    fpr, tpr, _ = roc_curve(positive, serious_score(probs, labels, referral["classes"]))
    point = referral["test"][name]
    line, = ax.plot(fpr, tpr, label=f"{name} (AUC {point['roc_auc']:.3f})")
    ax.plot(1 - point["specificity"], point["sensitivity"], "o", color=line.get_color())
  ax.plot([0, 1], [0, 1], ":", color="0.6")
  ax.set(xlabel="1 - specificity (benign referred)", ylabel="sensitivity (serious referred)",
         title=f"Referral: {' + '.join(referral['classes'])} (test)", xlim=(-0.01, 1),
         ylim=(0, 1.01))
  ax.legend(loc="lower right", fontsize=8, title=f"dots: threshold {referral['threshold']:.3f}",
            title_fontsize=8)
  atomic.save_figure(fig, path)
  plt.close(fig)


def shipped_file(referral: dict, model_sha256: str, disclaimer: str) -> dict:
  """The referral.json an app reads beside model.tflite."""
  shipped = referral["shipped_model"]
  return {"classes": referral["classes"], "threshold": referral["threshold"],
          "score": referral["score"], "refer_if": referral["refer_if"],
          "target_sensitivity": referral["target_sensitivity"],
          "validation": referral["validation"], "test": referral["test"][shipped],
          "model_sha256": model_sha256, "disclaimer": disclaimer}


def load_for_model(model_path: str, model_sha256: str):
  """The referral.json beside a model if it was fit for that very file, else None.

  Raises:
    PipelineError: a referral.json that is not one pipeline.build wrote.
  """
  import json  # pylint: disable=g-import-not-at-top
  path = os.path.join(os.path.dirname(os.path.abspath(model_path)), FILE_NAME)
  if not os.path.isfile(path):
    return None
  try:
    with open(path, encoding="utf-8") as f:
      referral = json.load(f)
    threshold, classes = float(referral["threshold"]), list(referral["classes"])
  except (OSError, ValueError, KeyError, TypeError) as e:
    raise PipelineError(f"{path}: not a referral file written by pipeline.build ({e})") from e
  if referral.get("model_sha256") != model_sha256:
    return None  # Fit on another model's outputs (e.g. the build's float32 beside its int8).
  referral["threshold"], referral["classes"] = threshold, classes
  return referral
