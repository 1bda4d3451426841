"""benchmarks.crossval: the folds come from the recipe's own data stage and never touch its
test split; the summary and the cross-fit referral threshold on hand-made folds."""

import json
import os

import numpy as np
import pytest

from benchmarks import crossval
from benchmarks import crossval_summary
from pipeline.data import splits as splits_lib
from pipeline.data.readers import read_csv


def test_folds_leave_the_recipes_test_split_out(tmp_path):
  flagfile = tmp_path / "recipe.flags"
  flagfile.write_text("--data_format=synthetic\n--set=data.synthetic_classes=3\n"
                      "--set=data.synthetic_per_class=20\n--image_size=32\n")
  paths = crossval.write_fold_splits(str(flagfile), 3, str(tmp_path / "cv"), print)
  recipe, _ = read_csv(str(tmp_path / "cv" / "split" / "splits.csv"), ("key", "split"))
  test = {r["key"] for r in recipe if r["split"] == "test"}
  held_out = []
  for path in paths:
    rows, _ = read_csv(path, splits_lib.COLUMNS)
    assert {r["key"] for r in rows if r["split"] == "unused"} == test
    held_out += [r["key"] for r in rows if r["split"] == "test"]
  assert sorted(held_out) == sorted({r["key"] for r in recipe} - test)  # Each once.


def _fold(work, i, bacc, gate=True):
  os.makedirs(work / f"fold_{i}")
  models = {v: {"balanced_accuracy": b, "accuracy": b + 0.1}
            for v, b in zip(("float32", "int8", "int8_tta8"), bacc)}
  (work / f"fold_{i}" / "report.json").write_text(json.dumps({
      "models": models, "gate": {"passed": gate}, "data": {"totals": {"test": 100 + i}},
      "stage_seconds": {"data": 6.0, "finetune": 54.0}}))


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


def test_a_work_dir_never_mixes_folds_of_two_recipes(tmp_path):
  from pipeline.errors import PipelineError  # pylint: disable=g-import-not-at-top
  flagfile = tmp_path / "recipe.flags"
  flagfile.write_text("--data_format=synthetic\n")
  work = str(tmp_path / "cv")
  crossval.claim_work_dir(work, str(flagfile), [], 5)
  crossval.claim_work_dir(work, str(flagfile), [], 5)  # The same recipe: its folds are reused.
  with pytest.raises(PipelineError, match="holds folds of another recipe \\(build_flag differ"):
    crossval.claim_work_dir(work, str(flagfile), ["--qat_epochs=1"], 5)
  with pytest.raises(PipelineError, match="folds differ"):
    crossval.claim_work_dir(work, str(flagfile), [], 3)


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
