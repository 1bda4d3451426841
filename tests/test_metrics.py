"""Metric math on hand-made predictions with known answers."""

import warnings

import numpy as np
import pytest

from pipeline import metrics

pytestmark = pytest.mark.fast


def _probs(pred, k):
  return np.eye(k)[pred]


def test_confusion_matrix_and_balanced_accuracy_known_case():
  # 3 classes: class 0 has 4 items (3 right), class 1 has 2 (1 right), class 2 has 4 (4 right).
  y_true = np.array([0, 0, 0, 0, 1, 1, 2, 2, 2, 2])
  y_pred = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 2])
  cm = metrics.confusion_matrix(y_true, y_pred, 3)
  np.testing.assert_array_equal(cm, [[3, 1, 0], [0, 1, 1], [0, 0, 4]])
  assert metrics.balanced_accuracy(cm) == pytest.approx((3 / 4 + 1 / 2 + 4 / 4) / 3)
  pc = metrics.per_class(cm)
  np.testing.assert_allclose(pc["precision"], [1.0, 0.5, 0.8])
  np.testing.assert_allclose(pc["recall"], [0.75, 0.5, 1.0])
  np.testing.assert_allclose(pc["f1"], [2 * 0.75 / 1.75, 0.5, 2 * 0.8 / 1.8])


def test_balanced_accuracy_ignores_absent_classes_and_differs_from_accuracy():
  y_true = np.array([0] * 9 + [1])
  y_pred = np.zeros(10, int)  # Always the majority class.
  cm = metrics.confusion_matrix(y_true, y_pred, 3)  # Class 2 never occurs.
  assert metrics.balanced_accuracy(cm) == pytest.approx(0.5)
  report = metrics.classification_report(y_true, _probs(y_pred, 3), ["a", "b", "c"])
  assert report["accuracy"] == pytest.approx(0.9)
  assert report["per_class_precision"]["b"] == 0.0  # Never predicted: 0, not NaN.


def test_top_k_accuracy():
  probs = np.array([[0.5, 0.3, 0.2], [0.1, 0.2, 0.7], [0.4, 0.35, 0.25]])
  y = np.array([1, 2, 2])
  assert metrics.top_k_accuracy(y, probs, 1) == pytest.approx(1 / 3)
  assert metrics.top_k_accuracy(y, probs, 2) == pytest.approx(2 / 3)
  assert metrics.top_k_accuracy(y, probs, 3) == pytest.approx(1.0)


def test_malignant_sensitivity_counts_within_group_confusions_as_caught():
  labels = ["akiec", "bcc", "mel", "nv"]
  # 2 mel: one called bcc (still malignant -> caught), one called nv (missed); 1 bcc right.
  y_true = np.array([2, 2, 1, 3])
  y_pred = np.array([1, 3, 1, 3])
  cm = metrics.confusion_matrix(y_true, y_pred, 4)
  assert metrics.group_sensitivity(cm, labels) == pytest.approx(2 / 3)
  assert metrics.group_sensitivity(cm, ["cat", "dog", "x", "y"]) is None


def test_agreement_and_probability_difference_with_reference():
  ref = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
  cand = np.array([[0.8, 0.2], [0.3, 0.7], [0.4, 0.6], [0.3, 0.7]])
  r = metrics.classification_report(np.array([0, 1, 0, 1]), cand, ["a", "b"], reference_probs=ref)
  assert r["top1_agreement"] == pytest.approx(0.75)
  assert r["mean_abs_prob_diff"] == pytest.approx(np.abs(ref - cand).mean())


def test_bootstrap_interval_brackets_the_estimate_and_is_deterministic():
  rng = np.random.default_rng(0)
  y = rng.integers(0, 3, 300)
  pred = np.where(rng.random(300) < 0.8, y, (y + 1) % 3)
  ci = metrics.bootstrap_ci(y, pred, 3, rounds=300, seed=1)
  acc = (y == pred).mean()
  assert ci["accuracy"][0] < acc < ci["accuracy"][1]
  assert ci["accuracy"][1] - ci["accuracy"][0] < 0.15
  assert ci == metrics.bootstrap_ci(y, pred, 3, rounds=300, seed=1)


def test_disagreement_margins_report_how_sure_the_reference_was_where_top1_flips():
  ref = np.array([[0.9, 0.1], [0.52, 0.48], [0.3, 0.7], [0.45, 0.55]])
  y_pred = np.array([0, 1, 1, 0])  # Flips items 1 (ref margin 0.04) and 3 (ref margin 0.10).
  r = metrics.disagreement_margins(ref, y_pred)
  assert r["disagreements"] == 2
  assert r["disagreement_max_reference_margin"] == pytest.approx(0.10)
  assert r["disagreement_median_reference_margin"] == pytest.approx(0.07)
  none = metrics.disagreement_margins(ref, ref.argmax(axis=1))
  assert none == {"disagreements": 0, "disagreement_max_reference_margin": None,
                  "disagreement_median_reference_margin": None}


def test_metrics_match_scikit_learn_on_random_data():
  from sklearn import metrics as sk
  rng = np.random.default_rng(0)
  k = 5
  for trial in range(6):
    n = int(rng.integers(20, 300))
    # Trial 0 leaves class 4 out of the truth (balanced accuracy must skip it, as sklearn does).
    y = rng.integers(0, k - 1 if trial == 0 else k, n)
    probs = rng.dirichlet(np.ones(k), n)
    probs[np.arange(n), y] += rng.random(n) * 0.5  # Better than chance, not perfect.
    pred = probs.argmax(1)
    cm = metrics.confusion_matrix(y, pred, k)
    np.testing.assert_array_equal(cm, sk.confusion_matrix(y, pred, labels=list(range(k))))
    with warnings.catch_warnings():  # sklearn warns about the class absent from the truth.
      warnings.simplefilter("ignore")
      assert metrics.balanced_accuracy(cm) == pytest.approx(sk.balanced_accuracy_score(y, pred))
    precision, recall, f1, _ = sk.precision_recall_fscore_support(
        y, pred, labels=list(range(k)), zero_division=0)
    pc = metrics.per_class(cm)
    np.testing.assert_allclose(pc["precision"], precision)
    np.testing.assert_allclose(pc["recall"], recall)
    np.testing.assert_allclose(pc["f1"], f1)
    for top in (1, 2, 3):
      assert metrics.top_k_accuracy(y, probs, top) == pytest.approx(
          sk.top_k_accuracy_score(y, probs, k=top, labels=list(range(k))))
