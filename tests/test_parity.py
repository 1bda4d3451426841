"""The parity gate's statistics and rule, on hand-made cases."""

import numpy as np
import pytest

from pipeline import parity
from pipeline.config import GateConfig
from pipeline.errors import PipelineError

pytestmark = pytest.mark.fast

LABELS = ["a", "b", "c"]


def _onehot_probs(pred, sure=0.9, k=3):
  """Probabilities whose top-1 is `pred` with probability `sure`, the rest shared."""
  p = np.full((len(pred), k), (1 - sure) / (k - 1))
  p[np.arange(len(pred)), pred] = sure
  return p


def test_mcnemar_exact_values():
  ref = np.array([True] * 5 + [False] * 3)
  cand = np.array([False] * 5 + [False] * 3)
  m = parity.mcnemar(ref, cand)
  assert (m["reference_only_right"], m["candidate_only_right"]) == (5, 0)
  assert m["p_candidate_worse"] == pytest.approx(0.5 ** 5)  # All 5 coins against int8.
  assert m["p_two_sided"] == pytest.approx(2 * 0.5 ** 5)
  even = parity.mcnemar(np.array([True, False]), np.array([False, True]))
  assert even["p_two_sided"] == pytest.approx(1.0)
  assert even["p_candidate_worse"] == pytest.approx(0.75)  # P(X >= 1), X ~ Bin(2, 0.5).
  assert parity.mcnemar(ref, ref)["p_candidate_worse"] == 1.0  # No discordant image.


def test_paired_bootstrap_is_paired_and_stratified():
  y = np.repeat([0, 1, 2], [50, 10, 5])
  right = np.ones(len(y), bool)
  assert parity.paired_bootstrap_drop(y, right, right, 500, 0) == [0.0, 0.0]
  # The candidate loses all of class 2: every stratified resample keeps its 5 images, so
  # the drop is exactly 1/3 in every round (an unpaired or unstratified bootstrap spreads).
  cand = right.copy()
  cand[y == 2] = False
  lo, hi = parity.paired_bootstrap_drop(y, right, cand, 500, 0)
  assert lo == pytest.approx(1 / 3) and hi == pytest.approx(1 / 3)
  # One lost image of 10 in class 1: the interval straddles zero, the point estimate inside.
  cand = right.copy()
  cand[50] = False
  lo, hi = parity.paired_bootstrap_drop(y, right, cand, 2000, 0)
  assert lo == 0.0 and 0.1 / 3 <= hi <= 0.3 / 3


def test_paired_comparison_lists_flips_with_both_top2():
  y = np.array([0, 1, 2, 0])
  ref = np.array([[0.6, 0.3, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6], [0.9, 0.05, 0.05]])
  cand = np.array([[0.3, 0.6, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6], [0.9, 0.05, 0.05]])
  p = parity.paired_comparison(y, ref, cand, LABELS, keys=["w", "x", "y", "z"],
                               bootstrap_rounds=200)
  assert p["top1_agreement"] == 0.75 and len(p["flips"]) == 1
  flip = p["flips"][0]
  assert flip["image"] == "w" and flip["true"] == "a" and not flip["candidate_correct"]
  assert flip["reference_top2"] == [["a", 0.6], ["b", 0.3]]
  assert flip["candidate_top2"] == [["b", 0.6], ["a", 0.3]]
  assert flip["reference_margin"] == pytest.approx(0.3)
  assert flip["candidate_lead"] == pytest.approx(0.3)  # int8's b 0.6 over the true a 0.3.
  assert p["balanced_accuracy_drop"] == pytest.approx(0.5 / 3)  # Class a: 2/2 -> 1/2.
  assert p["mcnemar"]["reference_only_right"] == 1


def _paired(y, ref_pred, cand_pred, ref_sure=0.9):
  return parity.paired_comparison(y, _onehot_probs(ref_pred, ref_sure),
                                  _onehot_probs(cand_pred), LABELS, bootstrap_rounds=500)


def test_near_tie_flips_alone_pass_where_the_old_fixed_gate_failed():
  # make demo's failing run: 48 images, 2 flips (one each way), 95.8% agreement, no loss.
  y = np.repeat([0, 1, 2], 16)
  ref, cand = y.copy(), y.copy()
  ref[0], cand[20] = 1, 2  # float32 wrong on image 0, int8 wrong on image 20.
  paired = parity.paired_comparison(y, _onehot_probs(ref, 0.45), _onehot_probs(cand, 0.45),
                                    LABELS, bootstrap_rounds=500)
  assert paired["top1_agreement"] == pytest.approx(46 / 48)
  result = parity.verdict(paired, GateConfig())
  assert result.passed, result.message()
  assert "passed" in result.message() and "Rule:" in result.message()


@pytest.mark.parametrize("case, reason", [
    ("agreement", "below the floor"),
    ("mcnemar", "wrong alone"),
    ("confident", "confident right float32 answer"),
    ("drop", "low end of the balanced-accuracy drop"),
])
def test_each_rule_fails_the_gate_on_its_own(case, reason):
  gate = GateConfig()
  y = np.repeat([0, 1, 2], 100)
  ref, cand = y.copy(), y.copy()
  sure = 0.45  # float32 margin 0.175: near-ties unless a case says otherwise.
  if case == "agreement":  # 12% flips, half each way: no net loss, only disagreement.
    idx = np.arange(0, 300, 8)
    ref[idx[::2]] = (y[idx[::2]] + 1) % 3
    cand[idx[1::2]] = (y[idx[1::2]] + 1) % 3
  elif case == "mcnemar":  # int8 wrong alone on 8 near-ties spread over classes.
    cand[np.arange(0, 300, 37)[:8]] = 1 - np.minimum(y[np.arange(0, 300, 37)[:8]], 1)
  elif case == "confident":  # One flip of a sure float32 answer into a wrong one.
    cand[5] = 2
    sure = 0.9
  elif case == "drop":  # A rare class lost, as many images won back in a large class:
    y = np.repeat([0, 1, 2], [200, 100, 5])  # McNemar even (5 vs 5), recall of c gone.
    ref, cand = y.copy(), y.copy()
    cand[y == 2] = 0
    ref[:5] = 1
  paired = _paired(y, ref, cand, sure)
  result = parity.verdict(paired, gate)
  assert not result.passed
  assert len(result.reasons) == 1 and reason in result.reasons[0], result.reasons
  with pytest.raises(PipelineError, match="parity gate FAILED"):
    parity.check_gate(result, "android_assets")
  with pytest.raises(PipelineError, match="losing the most SQNR: block_3_project_BN"):
    parity.check_gate(result, "android_assets", "block_3_project_BN (CONV_2D, ...)")
  # The 8-view model is judged against float32 over the same views, and says so.
  tta = parity.verdict(paired, gate, "int8_tta8", "float32_tta8")
  assert tta.reasons == tuple(r.replace("int8", "int8_tta8").replace("float32", "float32_tta8")
                              for r in result.reasons), tta.reasons
  assert tta.figures.startswith("int8_tta8 vs float32_tta8") and " float32 " not in tta.figures


def test_a_confident_flip_to_the_right_answer_is_not_a_defect():
  y = np.repeat([0, 1, 2], 100)
  ref, cand = y.copy(), y.copy()
  ref[7] = 1  # float32 sure and wrong; int8 right.
  result = parity.verdict(_paired(y, ref, cand, 0.9), GateConfig())
  assert result.passed, result.message()


def test_a_confident_mistake_changed_to_another_wrong_answer_is_not_a_defect():
  y = np.repeat([0, 1, 2], 100)
  ref, cand = y.copy(), y.copy()
  ref[7], cand[7] = 1, 2  # float32 sure and wrong; int8 wrong otherwise.
  paired = _paired(y, ref, cand, 0.9)
  assert paired["flips"][0]["reference_margin"] > GateConfig().max_flip_margin
  result = parity.verdict(paired, GateConfig())
  assert result.passed, result.message()
  cand[8] = 2  # A sure right float32 answer lost: that one fails it.
  assert not parity.verdict(_paired(y, ref, cand, 0.9), GateConfig()).passed


def _one_flip(ref_row, cand_row):
  """300 images both models get right and sure, and image 0 (true a) scored as given."""
  y = np.repeat([0, 1, 2], 100)
  ref, cand = _onehot_probs(y), _onehot_probs(y)
  ref[0], cand[0] = ref_row, cand_row
  return parity.paired_comparison(y, ref, cand, LABELS, bootstrap_rounds=500)


def test_a_sure_right_answer_flipped_to_a_near_tie_is_rounding_not_a_defect():
  # A HAM10000 default build's ISIC_0028739: float32 sure and right (margin 0.454), int8 wrong at a
  # near-tie (0.016 above the true class), no class moved by more than 0.27.
  near_tie = _one_flip([0.644, 0.190, 0.166], [0.375, 0.391, 0.234])
  assert near_tie["flips"][0]["reference_margin"] >= GateConfig().max_flip_margin
  assert near_tie["flips"][0]["candidate_lead"] == pytest.approx(0.016)
  result = parity.verdict(near_tie, GateConfig())
  assert result.passed, result.message()
  # The same flip with int8 sure of the wrong class (0.35 above the true one) fails it.
  sure = parity.verdict(_one_flip([0.644, 0.190, 0.166], [0.20, 0.55, 0.25]), GateConfig())
  assert not sure.passed and len(sure.reasons) == 1, sure.reasons
  assert "(margin 0.45), int8 b 0.55 (0.35 above a)" in sure.reasons[0], sure.reasons
  # ...and the lead it needs is a flag: at 0.4 that flip is rounding too.
  lax = GateConfig(min_wrong_lead=0.4)
  assert parity.verdict(_one_flip([0.644, 0.190, 0.166], [0.20, 0.55, 0.25]), lax).passed


def test_candidate_lead_of_a_flip_saved_before_it_was_recorded():
  old = {"true": "a", "candidate_correct": False, "candidate_top2": [["b", 0.5], ["a", 0.3]]}
  assert parity.candidate_lead(old) == pytest.approx(0.2)  # Exact: a is int8's second.
  old["candidate_top2"] = [["b", 0.5], ["c", 0.35]]
  assert parity.candidate_lead(old) == pytest.approx(0.15)  # a <= 0.35: a lower bound.
  assert parity.candidate_lead({**old, "candidate_lead": 0.45}) == 0.45
