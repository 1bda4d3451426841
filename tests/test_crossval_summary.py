"""benchmarks.crossval_summary and crossval_paired, and the parts of benchmarks.crossval that
build nothing: the
summary over hand-made fold reports, the cross-fit referral threshold, figures per source, the
paired comparison with another cross-validation, the recipe a work folder holds and the copy
a paired fold starts from."""

import json
import os

import numpy as np
import pytest

from benchmarks import crossval
from benchmarks import crossval_paired
from benchmarks import crossval_plot
from benchmarks import crossval_summary
from pipeline import referral
from pipeline.errors import PipelineError

pytestmark = pytest.mark.fast


def _fold(work, i, bacc, gate=True):
  os.makedirs(work / f"fold_{i}")
  models = {v: {"balanced_accuracy": b, "accuracy": b + 0.1}
            for v, b in zip(("float32", "int8", "int8_tta8"), bacc)}
  (work / f"fold_{i}" / "report.json").write_text(json.dumps({
      "models": models, "gate": {"passed": gate}, "data": {"totals": {"test": 100 + i}},
      "stage_seconds": {"data": 6.0, "finetune": 54.0},
      "config": {"data": {"split_file": f"s{i}.csv"}, "train": {"qat": {"epochs": 3}}}}))
  (work / f"fold_{i}" / "splits.csv").write_text(f"key,split\nimg{i},test\n")


def test_summary_of_the_finished_folds(tmp_path):
  for i, bacc in enumerate([(0.70, 0.71, 0.73), (0.72, 0.72, 0.75), (0.68, 0.69, 0.72)]):
    _fold(tmp_path, i, bacc, gate=i != 2)
  payload = crossval_summary.summarise(str(tmp_path), 5, rescore=False)
  assert payload["finished"] == [0, 1, 2]
  int8 = payload["variants"]["int8"]["balanced_accuracy"]
  assert int8["mean"] == pytest.approx(0.7067, abs=1e-4) and (int8["min"], int8["max"]) == (
      0.69, 0.72)
  assert int8["ci95"][0] < int8["mean"] < int8["ci95"][1]
  assert [p["gate_passed"] for p in payload["per_fold"]] == [True, True, False]
  assert payload["per_fold"][0]["minutes"] == 1.0
  text = "\n".join(crossval_summary.markdown(payload))
  assert "3 of 5 folds" in text and "70.7%" in text and "FAILED" in text
  # A fold built after a default changed in the code (same flagfile, another recipe).
  report = json.loads((tmp_path / "fold_2" / "report.json").read_text())
  report["config"] = {"data": {"split_file": "s2.csv"}, "train": {"qat": {"epochs": 1}}}
  (tmp_path / "fold_2" / "report.json").write_text(json.dumps(report))
  with pytest.raises(PipelineError, match="fold 2 was built with another recipe than fold 0 "
                     "\\(train.qat.epochs: 1 against 3\\)"):
    crossval_summary.summarise(str(tmp_path), 5, rescore=False)


def test_the_cross_fit_threshold_comes_from_the_other_folds():
  rng = np.random.default_rng(0)
  oof = {}
  for fold in range(4):
    serious = rng.random(400) < 0.2
    scores = np.where(serious, rng.beta(5, 2, 400), rng.beta(2, 5, 400))
    oof[fold] = {"scores": scores, "serious": serious}
  rows = crossval_summary.cross_fit_referral(oof, 0.9)
  assert [r["fold"] for r in rows] == [0, 1, 2, 3]
  for r in rows:
    others = [o for f, o in oof.items() if f != r["fold"]]
    assert r["fit_on_serious"] == sum(int(o["serious"].sum()) for o in others)
  # Exchangeable folds: the share referred is near the target on average.
  assert np.mean([r["sensitivity"] for r in rows]) == pytest.approx(0.9, abs=0.05)


def test_the_per_draw_margin_refers_more_of_the_held_out_lesions_at_a_lower_specificity():
  rng = np.random.default_rng(1)
  draw = lambda n: (lambda serious: (np.where(serious, rng.beta(5, 2, n), rng.beta(2, 5, n)),
                                     serious))(rng.random(n) < 0.2)
  oof = {}
  for fold in range(5):
    (scores, serious), (val_scores, val_serious) = draw(1200), draw(600)
    oof[fold] = {"scores": scores, "serious": serious, "val_scores": val_scores,
                 "val_serious": val_serious}
  average = crossval_summary.margin_referral(oof, 0.9, 0.0)
  per_draw = crossval_summary.margin_referral(oof, 0.9, 0.9)
  for a, m in zip(average, per_draw):
    o = oof[a["fold"]]
    # The average rank is the build's own threshold on its validation share.
    assert a["threshold"] == referral.fit_threshold(o["val_scores"], o["val_serious"], 0.9)
    assert m["threshold"] < a["threshold"]
    assert m["sensitivity"] >= a["sensitivity"] and m["specificity"] <= a["specificity"]
  assert np.mean([m["sensitivity"] for m in per_draw]) > np.mean(
      [a["sensitivity"] for a in average])


def test_figures_per_source_folder():
  # Fold 0 misses the extra folder's class 0; fold 1 gets every image right.
  oof = {f: {"y": np.array([0, 1, 0, 1]), "probs": np.eye(2)[[0, 1, 1 - f, 1]],
             "source": np.array(["dev", "dev", "extra", "extra"])} for f in (0, 1)}
  sources = crossval_summary.per_source(oof)
  assert sources["dev"]["images"] == 4 and sources["dev"]["balanced_accuracy"]["mean"] == 1.0
  extra = sources["extra"]["balanced_accuracy"]
  assert (extra["mean"], extra["min"], extra["max"], extra["folds"]) == (0.75, 0.5, 1.0, 2)
  source = crossval_summary._source  # pylint: disable=protected-access
  assert source("/d/ham10000_extra/images/x.jpg",
                "/d/ham10000_dev/images,/d/ham10000_extra/images") == "ham10000_extra"


def _report(work, i, **figures):
  with open(work / f"fold_{i}" / "report.json", encoding="utf-8") as f:
    report = json.load(f)
  for name, value in figures.items():
    variant, key = name.split("__")
    report["models"][variant][key] = value
  (work / f"fold_{i}" / "report.json").write_text(json.dumps(report))


def test_paired_differences_with_another_cross_validation(tmp_path):
  base, this = tmp_path / "base", tmp_path / "this"
  for i, bacc in enumerate([(0.70, 0.71, 0.73), (0.72, 0.72, 0.75), (0.68, 0.69, 0.72)]):
    _fold(base, i, bacc)
    _report(base, i, int8__top1_agreement=0.98, int8__disagreements=20)
  for i, bacc in enumerate([(0.70, 0.70, 0.73), (0.72, 0.70, 0.75)]):  # Fold 2 not done yet.
    _fold(this, i, bacc, gate=i == 0)
    _report(this, i, int8__top1_agreement=0.97, int8__disagreements=30 + i)
  report = json.loads((this / "fold_1" / "report.json").read_text())
  report["stage_seconds"]["finetune"] = 27.0  # Redone, at half the base's time.
  (this / "fold_1" / "report.json").write_text(json.dumps(report))
  (this / "recipe.json").write_text(json.dumps({"start": {"rerun_from": "finetune"}}))
  payload = crossval_summary.summarise(str(this), 3, rescore=False, compare_to=str(base))
  p = payload["paired"]
  assert p["folds"] == [0, 1]
  int8 = p["figures"]["int8 balanced accuracy"]
  assert int8["per_fold"] == {0: [0.71, 0.70], 1: [0.72, 0.70]}
  assert int8["difference"]["mean"] == pytest.approx(-0.015)
  assert int8["difference"]["ci95"][0] < -0.015 < int8["difference"]["ci95"][1]
  assert p["figures"]["int8 flips"]["difference"]["mean"] == pytest.approx(10.5)
  assert p["gate_passed"] == {0: [True, True], 1: [True, False]}
  assert list(p["stage_seconds"]) == ["finetune"]  # data was not redone: left out.
  text = "\n".join(crossval_summary.markdown(payload))
  assert "| int8 balanced accuracy | 71.0% / 70.0% | 72.0% / 70.0% | -1.5 points" in text
  assert "| int8 flips | 20 / 30 | 20 / 31 | +10.5 (+10.0 to +11.0)" in text
  assert "passed/FAILED" in text and "| finetune seconds | 54 / 54 | 54 / 27 | x0.75 |" in text
  assert "| minutes (redone from finetune) |" in text
  assert [f["minutes"] for f in payload["per_fold"]] == [0.9, 0.45]  # data was not redone.
  # Training images left out (a learning curve): the same held-out images, still paired.
  (this / "fold_1" / "splits.csv").write_text("key,split\nimg1,test\nimg9,unused\n")
  crossval_summary.summarise(str(this), 3, rescore=False, compare_to=str(base))
  (this / "fold_1" / "splits.csv").write_text("key,split\nimg1,val\n")  # Not the same fold.
  with pytest.raises(PipelineError, match="fold 1 holds out other images"):
    crossval_summary.summarise(str(this), 3, rescore=False, compare_to=str(base))
  (this / "fold_1" / "splits.csv").unlink()  # Its own words, not the data reader's.
  with pytest.raises(PipelineError, match="fold 1 of .* cannot be paired"):
    crossval_summary.summarise(str(this), 3, rescore=False, compare_to=str(base))


def test_a_paired_fold_starts_as_a_copy_without_its_report(tmp_path):
  base = tmp_path / "base"
  _fold(base, 0, (0.7, 0.7, 0.7))
  (base / "fold_0" / "report.md").write_text("# report")
  (base / "fold_0" / "build_state.json").write_text("{}")
  out = str(tmp_path / "this" / "fold_0")
  os.makedirs(tmp_path / "this")
  crossval.copy_fold(str(base / "fold_0"), out)
  assert sorted(os.listdir(out)) == ["build_state.json", "splits.csv"]
  assert not crossval_summary.finished(out)  # Until the redo writes its own report.
  assert os.listdir(tmp_path / "this") == ["fold_0"]  # No .partial left behind.
  crossval.copy_fold(str(base / "fold_0"), out)  # A killed redo is redone in place.
  assert sorted(os.listdir(out)) == ["build_state.json", "splits.csv"]


def test_paired_folds_come_from_a_cross_validation_of_the_same_recipe(tmp_path):
  flagfile = tmp_path / "recipe.flags"
  flagfile.write_text("--data_format=synthetic\n")
  base = str(tmp_path / "base")
  with pytest.raises(PipelineError, match="no cross-validation there"):
    crossval.base_split_files(base, str(flagfile), 5)
  crossval.claim_work_dir(base, str(flagfile), [], 5)
  paths = crossval.base_split_files(base, str(flagfile), 5)
  assert paths[4] == os.path.join(os.path.abspath(base), "splits_fold_4.csv")
  with pytest.raises(PipelineError, match="another flagfile or fold count.*--folds=5"):
    crossval.base_split_files(base, str(flagfile), 3)
  flagfile.write_text("--data_format=synthetic\n--image_size=48\n")
  with pytest.raises(PipelineError, match="another flagfile"):
    crossval.base_split_files(base, str(flagfile), 5)


def test_a_work_dir_never_mixes_folds_of_two_recipes(tmp_path):
  flagfile = tmp_path / "recipe.flags"
  flagfile.write_text("--data_format=synthetic\n")
  work = str(tmp_path / "cv")
  crossval.claim_work_dir(work, str(flagfile), [], 5)
  crossval.claim_work_dir(work, str(flagfile), [], 5)  # The same recipe: its folds are reused.
  with pytest.raises(PipelineError, match="holds folds of another recipe \\(build_flag differ"):
    crossval.claim_work_dir(work, str(flagfile), ["--qat_epochs=1"], 5)
  with pytest.raises(PipelineError, match="folds differ"):
    crossval.claim_work_dir(work, str(flagfile), [], 3)


def test_score_moves_compare_the_tail_of_each_side():
  base = {0: np.array([0.01] * 98 + [0.25, 0.3]), 1: np.zeros(100)}
  this = {0: np.array([0.01] * 99 + [0.5]), 1: np.array([0.0] * 99 + [0.21])}
  figures = crossval_paired.move_figures(base, this)
  unit, moved = figures["int8 images moved over 0.2 from float32"]
  assert unit == "count" and moved == {0: [2, 1], 1: [0, 1]}
  p = crossval_paired.paired({}, {}, more=figures)  # No report-based fold: nothing to pair.
  assert p["figures"]["int8 images moved over 0.2 from float32"]["difference"] is None
  reports = {i: {"models": {}, "gate": {"passed": True}, "stage_seconds": {}} for i in (0, 1)}
  p = crossval_paired.paired(reports, reports, more=figures)
  assert p["figures"]["int8 images moved over 0.2 from float32"]["difference"]["mean"] == 0
  tail = p["figures"]["int8's largest score move, 99th percentile"]
  assert tail["unit"] == "probability" and tail["per_fold"][0][0] == pytest.approx(0.2505)
  text = "\n".join(crossval_paired.markdown({"paired": p, "compare_to": "/b"}))
  assert "| int8 images moved over 0.2 from float32 | 2 / 1 | 0 / 1 | +0.0 (-1.0 to +1.0)" in text
  assert "| int8's largest score move, 99th percentile | 0.251 / 0.015 |" in text
  elsewhere = crossval_paired.move_figures({2: base[0]}, {2: this[0]})  # Another fold.
  p = crossval_paired.paired(reports, reports, more=elsewhere)
  assert "moved over" not in "\n".join(crossval_paired.markdown({"paired": p, "compare_to": "/b"}))


def test_the_plot_shows_each_folds_figures_and_the_referral_target(tmp_path):
  for i, bacc in enumerate([(0.70, 0.71, 0.73), (0.72, 0.72, 0.75), (0.68, 0.69, 0.72)]):
    _fold(tmp_path, i, bacc)
  payload = crossval_summary.summarise(str(tmp_path), 5, rescore=False)
  for i, p in enumerate(payload["per_fold"]):
    p["referral_own"] = {"sensitivity": 0.91 + 0.01 * i}
  payload["referral"] = {
      "target_sensitivity": 0.9, "own_sensitivity": {"mean": 0.92},
      "sensitivity": {"mean": 0.88},
      "cross_fit": [{"fold": i, "sensitivity": 0.87 + 0.01 * i} for i in range(3)],
      "per_draw": {"confidence": 0.9, "sensitivity": {"mean": 0.95},
                   "folds": [{"fold": i, "sensitivity": 0.94 + 0.01 * i} for i in range(3)]}}
  fig = crossval_plot.figure(payload)
  accuracy, referral = fig.axes
  dots = {line.get_label().split(":")[0]: list(line.get_ydata()) for line in accuracy.lines
          if line.get_linestyle() == "None"}
  assert dots == {"float32": [70, 72, 68], "int8": [71, 72, 69], "int8_tta8": [73, 75, 72]}
  shares = [list(line.get_ydata()) for line in referral.lines]
  assert shares[0] == pytest.approx([91, 92, 93]) and shares[1] == pytest.approx([87, 88, 89])
  assert shares[2] == pytest.approx([94, 95, 96]) and shares[3] == [90, 90]  # The target.
  crossval_plot.plot(payload, str(tmp_path / "crossval.png"))
  from PIL import Image
  width, height = Image.open(tmp_path / "crossval.png").size
  assert width > 2 * height  # Both panels.


def test_only_folds_picks_folds_of_the_cross_validation():
  assert crossval.selected_folds(5, []) == [0, 1, 2, 3, 4]
  assert crossval.selected_folds(5, ["2", "0", "2"]) == [0, 2]
  with pytest.raises(PipelineError, match="--only_folds: 5, x is not a fold of --folds=5"):
    crossval.selected_folds(5, ["1", "5", "x"])
