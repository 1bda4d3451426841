"""The referral threshold: the conformal rank, its promise on new photos, the serious classes."""

import json

import numpy as np
import pytest

from pipeline import referral
from pipeline.errors import PipelineError

pytestmark = pytest.mark.fast


def test_referral_threshold_refers_the_conformal_rank():
  scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05])
  positive = np.array([1, 1, 0, 1, 1, 0, 1, 0, 0, 0], bool)  # 5 positives: 0.9 0.8 0.6 0.5 0.3.
  # ceil(s x (5 + 1)) of them at or above the threshold: 3 for 0.5 (exactly 3.0), 4 for 0.6.
  assert referral.conformal_rank(5, 0.5) == 3 and referral.conformal_rank(10, 0.9) == 10
  assert referral.conformal_rank(24, 0.56) == 14  # Not 15 for a rounding error of 0.56 x 25.
  assert referral.fit_threshold(scores, positive, 0.5) == 0.6
  assert referral.fit_threshold(scores, positive, 0.6) == 0.5
  # 90% needs 6 of 5, more than there are: the threshold refers all of them.
  assert referral.conformal_rank(5, 0.9) == 6
  assert referral.fit_threshold(scores, positive, 0.9) == 0.3
  point = referral.operating_point(scores, positive, 0.5)
  assert point["sensitivity"] == 0.8 and point["specificity"] == 0.8  # 0.7 referred.
  with pytest.raises(PipelineError, match="no image of the serious classes"):
    referral.fit_threshold(scores, np.zeros(10, bool), 0.9)


def test_referral_threshold_holds_its_sensitivity_on_new_photos():
  """The promise is about new serious photos: over many validation draws, the share of new
  ones referred is at least the target on average. Referring the target's share of the
  validation cases themselves would average 9 / 11 = 81.8% here."""
  rng = np.random.default_rng(0)
  scores = rng.random((4000, 10))  # 10 serious validation cases per draw, scores U(0, 1).
  thresholds = np.array([referral.fit_threshold(s, np.ones(10, bool), 0.9) for s in scores])
  # A new case's score is U(0, 1) too: referred with probability 1 - threshold.
  assert np.mean(1 - thresholds) >= 0.9


def test_referral_evaluate_scores_both_models_at_the_shipped_threshold():
  from sklearn.metrics import roc_auc_score
  rng = np.random.default_rng(0)
  labels = ["bcc", "mel", "nv"]
  y_val, y_test = rng.integers(0, 3, 200), rng.integers(0, 3, 300)

  def probs(y, noise):
    logits = np.eye(3)[y] * 2 + rng.normal(0, noise, (len(y), 3))
    e = np.exp(logits)
    return e / e.sum(axis=1, keepdims=True)
  val = {"int8": probs(y_val, 1.0), "float32": probs(y_val, 1.0)}
  test = {"int8": probs(y_test, 1.0), "float32": probs(y_test, 1.0)}
  r = referral.evaluate(val, y_val, test, y_test, labels, ["mel", "bcc"], 0.9,
                        bootstrap_rounds=200)
  assert r["validation"]["sensitivity"] >= 0.9 and r["enough_cases"] is True
  json.dumps(r)  # It is written as referral.json.
  # 5 serious validation cases are too few for 90% (it takes 9): all of them are referred.
  few = np.concatenate([np.flatnonzero(y_val < 2)[:5], np.flatnonzero(y_val == 2)[:5]])
  small = referral.evaluate({n: p[few] for n, p in val.items()}, y_val[few], test, y_test,
                            labels, ["mel", "bcc"], 0.9, bootstrap_rounds=0)
  assert small["enough_cases"] is False and small["validation"]["sensitivity"] == 1.0
  serious_test = y_test < 2
  for name in ("int8", "float32"):
    score = test[name][:, :2].sum(axis=1)
    t = r["test"][name]
    assert t["sensitivity"] == pytest.approx((score[serious_test] >= r["threshold"]).mean())
    assert t["roc_auc"] == pytest.approx(roc_auc_score(serious_test, score))
    lo, hi = t["ci95"]["roc_auc"]
    assert lo < t["roc_auc"] < hi


def test_serious_classes_default_to_those_the_dataset_has():
  from pipeline.config import ReferralConfig
  ham = ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]
  assert ReferralConfig().classes("ham10000", ham) == ("mel", "bcc", "akiec")
  # A subset without bcc (as in tests/test_formats_end_to_end.py's hmnist set) keeps the rest.
  assert ReferralConfig().classes("hmnist_csv", ["akiec", "mel", "nv"]) == ("mel", "akiec")
  assert ReferralConfig().classes("ham10000", ["mel", "bcc"]) == ()  # Nothing left to not refer.
  assert ReferralConfig().classes("folders", ["eczema", "non_eczema"]) == ()
  ReferralConfig().check_labels("hmnist_csv", ["akiec", "mel", "nv"])  # Defaults never fail.
  with pytest.raises(PipelineError, match="--malignant_classes: bcc not among"):
    ReferralConfig(malignant_classes=("mel", "bcc")).check_labels("folders", ["mel", "nv"])
  with pytest.raises(PipelineError, match="names every label"):
    ReferralConfig(malignant_classes=("mel", "nv")).check_labels("folders", ["mel", "nv"])
  assert ReferralConfig(malignant_classes=()).classes("ham10000", ham) == ()  # Turned off.


def test_a_confidence_margin_holds_the_sensitivity_in_that_share_of_draws():
  # Scores exchangeable with the validation ones: coverage of the k-th highest of n is
  # Beta(k, n + 1 - k). With confidence 0.9, at least 90% of draws reach the sensitivity.
  n, rng = 71, np.random.default_rng(0)
  k = referral.conformal_rank(n, 0.9, confidence=0.9)
  assert referral.conformal_rank(n, 0.9) < k <= n
  covered = []
  for _ in range(2000):
    scores = rng.random(n)
    threshold = referral.fit_threshold(scores, np.ones(n, bool), 0.9, confidence=0.9)
    covered.append(1.0 - threshold >= 0.9)  # New scores are uniform: P(refer) = 1 - t.
  assert np.mean(covered) >= 0.88
  mean_rule = [1.0 - referral.fit_threshold(rng.random(n), np.ones(n, bool), 0.9) >= 0.9
               for _ in range(2000)]
  assert np.mean(mean_rule) < 0.75  # On average is not per draw.
  assert "in 90% of validation draws" in referral.promise(0.9, 0.9)
