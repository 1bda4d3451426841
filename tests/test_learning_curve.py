"""benchmarks.learning_curve over hand-made cross-validations of the same folds at three
training sizes: the gain per doubling paired by fold, per step, and a target's price."""

import json

import numpy as np
import pytest

from benchmarks import learning_curve
from pipeline.errors import PipelineError

pytestmark = pytest.mark.fast

OFFSET = (0.60, 0.63, 0.57)  # Each fold's own level: a paired slope does not see it.
GAIN = {100: 0.0, 200: 0.06, 400: 0.08}  # Diminishing: +6 points, then +2.


def _cv(work, lesions, held_out="img_test"):
  for i, offset in enumerate(OFFSET):
    fold = work / f"fold_{i}"
    fold.mkdir(parents=True)
    rows = [f"t{g}_{j},lesion{g},train" for g in range(lesions) for j in range(2 if g % 2 else 1)]
    (fold / "splits.csv").write_text("key,group,split\n" + "\n".join(
        rows + [f"{held_out}{i},h{i},test", f"extra{i},lesion_x,unused"]) + "\n")
    bacc = offset + GAIN[lesions]
    (fold / "report.json").write_text(json.dumps({
        "models": {v: {"balanced_accuracy": bacc + d}
                   for v, d in (("float32", 0.0), ("int8", -0.01))},
        "gate": {"passed": True}, "data": {"totals": {"train": len(rows)}},
        "config": {"data": {"split_file": f"s{i}.csv"}}}))
  return str(work)


def test_gain_per_doubling_is_paired_by_fold_and_priced_for_a_target(tmp_path):
  full, quarter, half = (_cv(tmp_path / n, s) for n, s in (("full", 400), ("q", 100),
                                                            ("h", 200)))
  payload = learning_curve.summarise([full, quarter, half], 3, {"int8": 0.70})
  assert [s["work_dir"] for s in payload["sizes"]] == [quarter, half, full]  # By lesions.
  assert [s["train_lesions"]["mean"] for s in payload["sizes"]] == [100, 200, 400]
  assert payload["sizes"][0]["per_fold"][0]["train_images"] == 150
  int8 = payload["variants"]["int8"]
  assert [m["mean"] for m in int8["per_size"]] == pytest.approx([0.59, 0.65, 0.67])
  # The fold offsets (3 points apart) cancel: every fold gains the same.
  assert int8["per_fold"] == pytest.approx({0: 0.04, 1: 0.04, 2: 0.04})
  assert int8["gain"]["ci95"] == pytest.approx([0.04, 0.04])
  assert [s["gain"]["mean"] for s in int8["steps"]] == pytest.approx([0.06, 0.02])
  # 70% from 67% at the top step's 2 points per doubling (not the average 4): 1.5 doublings.
  t = int8["target"]
  assert t["points_short"] == pytest.approx(0.03)
  assert t["factor"] == pytest.approx(2 ** 1.5)
  assert t["lesions"] == pytest.approx(400 * 2 ** 1.5)
  text = "\n".join(learning_curve.markdown(payload))
  assert f"| {quarter} | 100 | 150 | 3 | 60.0% (52.5-67.5) | 59.0% (51.5-66.5) |" in text
  assert "- int8: +4.0 (+4.0 to +4.0), +4.0 to +4.0 over 3 folds; q to h +6.0" in text
  assert "about 2.8x the training lesions (1131;" in text
  fig = learning_curve.figure(payload)
  means = [list(line.get_ydata()) for line in fig.axes[0].lines if line.get_marker() == "o"]
  assert means[1] == pytest.approx([59.0, 65.0, 67.0])  # int8's mean at each size.


def test_a_target_already_reached_and_one_the_curve_cannot_reach(tmp_path):
  small, big = _cv(tmp_path / "s", 100), _cv(tmp_path / "b", 200)
  t = learning_curve.summarise([small, big], 3, {"int8": 0.6})["variants"]["int8"]["target"]
  assert (t["points_short"], t["factor"]) == (0.0, 1.0)
  # The faster end of the gain's interval prices the fewer lesions.
  t = learning_curve.price(0.67, 400, {"mean": 0.04, "ci95": [0.02, 0.06]}, 0.70)
  assert t["factor_ci95"] == pytest.approx([2 ** 0.5, 2 ** 1.5])
  t = learning_curve.price(0.67, 400, {"mean": 0.04, "ci95": [0.0, 0.06]}, 0.70)
  assert t["factor_ci95"] == [pytest.approx(2 ** 0.5), None]  # No gain at one end: never.
  assert [learning_curve._factor(f) for f in (None, 524.7, 2.83)] == [  # pylint: disable=protected-access
      "no end", "over 100x", "2.8x"]
  flat = learning_curve.price(0.6, 200, {"mean": -0.01, "ci95": [-0.02, 0.0]}, 0.7)
  assert flat["factor"] is None and flat["factor_ci95"] == [None, None]


def test_cross_validations_of_other_folds_or_one_size_are_refused(tmp_path):
  small, big = _cv(tmp_path / "s", 100), _cv(tmp_path / "b", 200, held_out="other")
  with pytest.raises(PipelineError, match="fold 0 holds out other images"):
    learning_curve.summarise([small, big], 3, {})
  with pytest.raises(PipelineError, match="two or more --work_dir"):
    learning_curve.summarise([small], 3, {})
  same = _cv(tmp_path / "same", 200)
  with pytest.raises(PipelineError, match="did not build int8_tta8"):
    learning_curve.summarise([small, same], 3, {"int8_tta8": 0.75})
  with pytest.raises(PipelineError, match="train on the same number of lesions"):
    learning_curve.summarise([small, same, _cv(tmp_path / "twin", 200)], 3, {})
  import shutil  # pylint: disable=g-import-not-at-top
  shutil.rmtree(tmp_path / "s" / "fold_0")  # Fold 0 of the other two is checked all the same.
  other = _cv(tmp_path / "o", 400)
  held_out = tmp_path / "o" / "fold_0" / "splits.csv"
  held_out.write_text(held_out.read_text().replace("img_test0", "other0"))
  with pytest.raises(PipelineError, match="fold 0 holds out other images"):
    learning_curve.summarise([small, same, other], 3, {})
  with pytest.raises(PipelineError, match="--target=int8:x: give VARIANT:SHARE"):
    learning_curve._targets(["int8:x"])  # pylint: disable=protected-access
  assert np.isclose(learning_curve._targets(["int8:0.72"])["int8"], 0.72)  # pylint: disable=protected-access


def test_a_fold_missing_at_one_size_counts_where_it_has_two(tmp_path):
  import shutil  # pylint: disable=g-import-not-at-top
  quarter, half, full = (_cv(tmp_path / n, s) for n, s in (("q", 100), ("h", 200), ("f", 400)))
  shutil.rmtree(tmp_path / "q" / "fold_2")  # Fold 2 only at the two larger sizes.
  int8 = learning_curve.summarise([quarter, half, full], 3, {"int8": 0.7})["variants"]["int8"]
  assert int8["per_fold"] == pytest.approx({0: 0.04, 1: 0.04, 2: 0.02})
  assert [s["gain"]["folds"] for s in int8["steps"]] == [2, 3]
  assert [s["gain"]["mean"] for s in int8["steps"]] == pytest.approx([0.06, 0.02])
