"""The reports of the recipe benchmarks (benchmarks.distill_report, benchmarks.recipes,
benchmarks.compare): how a recipe is named, how re-runs pair against a control and how one
recipe's builds are summed up, on hand-made payloads."""

import dataclasses
import json
import os

import numpy as np
import pytest

from benchmarks import compare
from benchmarks import distill
from benchmarks import distill_report
from benchmarks import readout
from benchmarks import recipes
from pipeline.errors import PipelineError
from tests.conftest import run_cli


def _distill_report(builds, tests, epochs=15, shipped=0.7, seed_offset=0):
  """A benchmarks.distill payload: one student per build with these test scores."""
  row = lambda t: {"val": t - 0.05, "test": t, "test_tta8": t + 0.01}
  return {"student": {"init": "transfer", "epochs": epochs, "learning_rate": 3e-4,
                      "warmup_epochs": 1.0, "label_weight": 1.0, "finetune_layers": None,
                      "seed_offset": seed_offset},
          "builds": [{"build": b, "rows": {"shipped": row(shipped), "student": row(t)},
                      "student_epoch_seconds": 40.0} for b, t in zip(builds, tests)]}


def test_recipes_benchmark_pairs_each_recipe_with_the_control_build_by_build(tmp_path):
  builds = ["b/def1", "b/def2", "b/def3"]
  control = _distill_report(builds, [0.72, 0.74, 0.70])
  candidate = _distill_report(builds, [0.73, 0.71, 0.72], epochs=20)
  payload = recipes.pair([("control", control), ("longer", candidate)])
  (draw,) = payload["draws"]
  longer = draw["summary"]["longer"]["test"]
  assert longer["mean"] == pytest.approx(0.72)
  # Paired: +1, -3, +2 points, not the difference of the means alone.
  assert (longer["change_mean"], longer["change_min"], longer["change_max"]) == pytest.approx(
      (0.0, -0.03, 0.02))
  assert draw["summary"]["shipped"]["test"]["change_mean"] == pytest.approx(0.7 - 0.72)
  assert draw["summary"]["control"]["test"]["change_max"] == 0.0
  assert list(draw["summary"]) == ["shipped", "control", "longer"]
  table = "\n".join(recipes.markdown(payload))
  assert "| longer | 72.0% (71.0-73.0) | +0.0 (-3.0 to +2.0) |" in table
  assert "20 epochs" in table
  with pytest.raises(PipelineError, match="not the control's"):
    recipes.pair([("control", control), ("other", _distill_report(builds[::-1], [0.7] * 3))])
  assert "Pooled" not in table  # One draw each: nothing to pool.
  with pytest.raises(PipelineError, match="must differ"):
    recipes.pair([("control", control), ("control", candidate)])
  # From the command line, a user's mistake is one line and a non-zero exit.
  json.dump(control, open(tmp_path / "control.json", "w"))
  proc = run_cli(["-m", "benchmarks.recipes", f"--report=control={tmp_path / 'control.json'}",
                  f"--report=missing={tmp_path / 'missing.json'}",
                  f"--output_json={tmp_path / 'out.json'}"])
  assert proc.returncode != 0 and "Traceback" not in proc.stderr
  assert proc.stderr.strip().splitlines()[-1].startswith(
      "benchmarks.recipes: error: ") and "missing.json" in proc.stderr
  assert not os.path.exists(tmp_path / "out.json")


def test_recipes_benchmark_pairs_each_draw_with_the_controls_of_its_seed_and_pools_them():
  """A name given again is another draw (--seed_offset) of that recipe: each draw pairs with the
  control's draw of the same seed, whatever order the reports come in, and the pooled table
  gives each recipe over all its pairs."""
  builds = ["b/def1", "b/def2", "b/def3"]
  c0 = _distill_report(builds, [0.70, 0.70, 0.74])
  c1 = _distill_report(builds, [0.68, 0.68, 0.72], seed_offset=1)
  r0 = _distill_report(builds, [0.72, 0.73, 0.74])  # +2, +3, 0 against c0.
  r1 = _distill_report(builds, [0.68, 0.67, 0.69], seed_offset=1)  # 0, -1, -3 against c1.
  payload = recipes.pair([("control", c0), ("sqrt", r1), ("sqrt", r0), ("control", c1)])
  by_seed = {d["seed_offset"]: d for d in payload["draws"]}
  assert by_seed[1]["control"] == "control (--seed_offset=1)"
  assert list(by_seed[1]["summary"]) == ["shipped", "control (--seed_offset=1)",
                                         "sqrt (--seed_offset=1)"]
  assert by_seed[1]["summary"]["sqrt (--seed_offset=1)"]["test"]["change_mean"] == (
      pytest.approx(-0.04 / 3))
  pooled = payload["pooled"]
  assert list(pooled) == ["shipped", "control", "sqrt"]
  sqrt = pooled["sqrt"]["test"]
  assert sqrt["n"] == 6 and sqrt["mean"] == pytest.approx(np.mean([.72, .73, .74, .68, .67, .69]))
  # Paired within each seed: (2 + 3 + 0 + 0 - 1 - 3) / 6, not the difference of pooled means.
  assert (sqrt["change_mean"], sqrt["change_min"], sqrt["change_max"]) == pytest.approx(
      (0.01 / 6, -0.03, 0.03))
  assert pooled["shipped"]["test"]["n"] == 6  # Against each control draw.
  assert pooled["control"]["test"]["change_max"] == 0.0
  table = "\n".join(recipes.markdown(payload))
  assert "## --seed_offset=1" in table and "## Pooled over the seeds" in table
  assert "| sqrt | 6 | 70.5% (67.0-74.0) | +0.2 (-3.0 to +3.0) | 2 of 6 |" in table
  assert sqrt["wins"] == 2  # +2, +3 (0, 0, -1 and -3 are not wins).
  with pytest.raises(PipelineError, match=r"drawn at --seed_offset=1, and the control"):
    recipes.pair([("control", c0), ("sqrt", r1)])
  with pytest.raises(PipelineError, match="must differ"):
    recipes.pair([("control", c0), ("sqrt", r0), ("sqrt", r0)])


def test_a_student_is_described_by_what_differs_from_the_build():
  """One description of a student, in both benchmarks' reports, naming each change asked."""
  base = distill.Student("transfer", 15, 3e-4, 1.0, 1.0)
  plain = distill_report.describe(dataclasses.asdict(base))
  assert plain == ("15 epochs from the transfer weights, peak learning rate 0.0003 after 1 "
                   "warm-up epoch(s), the build's layers")
  changed = distill_report.describe(dataclasses.asdict(dataclasses.replace(
      base, label_weight=0.5, weight_decay=0.2, low_res_epochs=4, low_res_size=160,
      finetune_layers=154, label_smoothing=0.0, color_jitter=0.3, seed_offset=2)))
  for phrase in ("top 154 backbone layers", "seed + 2", "label smoothing 0",
                 "weight decay 0.2 (AdamW)", "colour jitter 0.3", "first 4 more epochs at 160 px",
                 "target 0.5 x smoothed labels + 0.5 x the 8-view teacher"):
    assert phrase in changed, phrase


def test_the_report_gives_the_soups_gain_over_the_mean_of_its_members():
  def build(name, shipped, student, soup):
    row = lambda v: {"test": v, "test_tta8": v + 0.01, "val": v - 0.01}
    return {"build": name, "student_epoch_seconds": 40.0,
            "rows": {"shipped": row(shipped), "student": row(student), "soup": row(soup)}}

  builds = [build("a", 0.70, 0.72, 0.73), build("b", 0.70, 0.70, 0.70)]
  student = distill.Student("transfer", 15, 3e-4, 1.0, 1.0, soup=True)
  payload = {"student": dataclasses.asdict(student),
             "builds": builds, "summary": readout.summarize(builds)}
  text = "\n".join(distill_report.markdown(payload))
  assert ("The soup against the mean of its two members (shipped and student), build by "
          "build: test +1.0 (+0.0 to +2.0); test_tta8 +1.0 (+0.0 to +2.0); val +1.0 "
          "(+0.0 to +2.0).") in text
  assert "| soup | 71.5% (70.0-73.0) |" in text


def _build_figures(name, float32, int8):
  """What benchmarks.compare.read_build returns for one build."""
  recall = {"a": float32, "b": float32}
  return {"build": name, "balanced_accuracy": {"float32": float32, "int8": int8},
          "accuracy": {"float32": 0.8, "int8": 0.8}, "referral": {},
          "recall": {"float32": recall, "int8": recall}, "gate_passed": True, "minutes": 21.0,
          "finetune_seconds_per_epoch": 42.0}


def test_compare_sums_up_one_recipe_with_its_build_to_build_standard_deviation():
  """With --baseline alone, one column: mean (min-max) and the sample standard deviation over
  the builds, the figures a recipe's target (a mean, a floor, a spread) is read from."""
  builds = [_build_figures(f"def{i}", f, f - 0.01) for i, f in enumerate((0.70, 0.72, 0.74), 1)]
  payload = {"baseline": builds, "candidate": []}
  payload["summary"] = {g: compare.summarize(payload[g]) for g in compare.groups(payload)}
  float32 = payload["summary"]["baseline"]["balanced_accuracy"]["float32"]
  assert (float32["mean"], float32["sd"]) == pytest.approx((0.72, 0.02))  # ddof 1, not 0.0163.
  text = "\n".join(compare.markdown(payload))
  assert text.startswith("# One recipe over finished builds")
  assert "| float32 | 72.0% (70.0-74.0), SD 2.0 |" in text
  assert "candidate" not in text and "| baseline | 3/3 | 21 (21-21) | 42 (42-42) |" in text
  one = compare.summarize(builds[:1])["balanced_accuracy"]["float32"]
  assert one["sd"] == 0.0 and one["mean"] == 0.70
