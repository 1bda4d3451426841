"""--train_fraction (a share of each class's training lesions, the rest 'unused' in splits.csv)
and benchmarks.learning_curve, which re-runs a build's recipe on such shares."""

import collections
import json
import os

import numpy as np
import pytest

from pipeline import data as data_lib
from pipeline import report as report_lib
from pipeline.config import BuildConfig, DataConfig, RunOptions, replace
from pipeline.data import splits as splits_lib
from pipeline.errors import PipelineError
from pipeline.stages import data as data_stage
from pipeline.stages.state import BuildState
from tests import imagefiles
from tests.conftest import run_cli


def _examples(lesions=300):
  rng = np.random.default_rng(0)
  return [data_lib.Example(key=f"{lesion}_{k}", label=["nv", "mel", "df"][lesion % 3],
                           group=f"L{lesion}")
          for lesion in range(lesions) for k in range(rng.integers(1, 4))]


def _groups(examples, assignment, split):
  return {e.group for e in examples if assignment[e.key] == split}


def test_subsample_keeps_a_share_of_each_class_lesions_and_leaves_val_and_test_alone():
  examples = _examples()
  labels = {e.group: e.label for e in examples}
  full = splits_lib.assign(examples, 0.1, 0.2, seed=3)
  half = splits_lib.subsample_train(examples, full, 0.5, seed=3)
  for split in ("val", "test"):
    assert _groups(examples, half, split) == _groups(examples, full, split)
  kept, dropped = _groups(examples, half, "train"), _groups(examples, half, splits_lib.UNUSED)
  assert kept | dropped == _groups(examples, full, "train") and not kept & dropped
  for e in examples:  # A lesion is kept or left out whole.
    assert (half[e.key] == splits_lib.UNUSED) == (e.group in dropped)
  per_class = lambda groups: collections.Counter(labels[g] for g in groups)
  for label, n in per_class(_groups(examples, full, "train")).items():
    assert per_class(kept)[label] == round(0.5 * n), label
  assert splits_lib.subsample_train(examples, full, 0.5, seed=3) == half
  assert _groups(examples, splits_lib.subsample_train(examples, full, 0.5, seed=4),
                 "train") != kept
  assert splits_lib.subsample_train(examples, full, 1.0, seed=3) is full
  tiny = splits_lib.subsample_train(examples, full, 0.001, seed=3)
  assert sorted(per_class(_groups(examples, tiny, "train")).values()) == [1, 1, 1]


def _run(cfg, out, seed=0, resume=False):
  config = BuildConfig(seed=seed, data=cfg)
  os.makedirs(out, exist_ok=True)
  state = BuildState(options=RunOptions(output_dir=str(out), resume=resume), log=lambda _: None,
                     started="")
  return data_stage.run(config, state).bundle


def test_data_stage_writes_the_left_out_images_and_resume_does_not_subsample_again(tmp_path):
  dirs, csv_path, _ = imagefiles.ham_dataset(
      str(tmp_path / "ham"), per_class={"akiec": 12, "bcc": 12, "mel": 16, "nv": 28})
  cfg = DataConfig(data_format="ham10000", data_dir=dirs, metadata_csv=csv_path, image_size=32)
  whole = _run(cfg, tmp_path / "whole", seed=5)
  split_file = str(tmp_path / "whole" / "splits.csv")
  part_cfg = replace(cfg, split_file=split_file, train_fraction=0.5)
  part = _run(part_cfg, tmp_path / "part", seed=6)
  for name in ("val", "test"):
    assert part.splits[name].keys == whole.splits[name].keys
  assert len(part.splits["train"]) + len(part.unused) == len(whole.splits["train"])
  assert 0 < len(part.unused) < len(whole.splits["train"])
  saved = splits_lib.read_assignment(str(tmp_path / "part" / "splits.csv"))
  assert sorted(k for k, s in saved.items() if s == splits_lib.UNUSED) == sorted(
      key for key, _, _ in part.unused)
  with open(tmp_path / "part" / "data_report.json") as f:
    data = json.load(f)
  assert data["unused"] == len(part.unused)
  report_lib.write_report(str(tmp_path / "r.json"), str(tmp_path / "r.md"),
                          {"name": "r", "data": data})
  assert (f"Left out of training (--train_fraction): {len(part.unused)} images, listed as "
          "`unused` in splits.csv.") in (tmp_path / "r.md").read_text()
  resumed = _run(part_cfg, tmp_path / "part", seed=6, resume=True)
  assert resumed.splits["train"].keys == part.splits["train"].keys
  assert resumed.unused == part.unused


def test_train_fraction_out_of_range_is_one_clear_error():
  for bad in (0.0, 1.5):
    with pytest.raises(PipelineError, match="--train_fraction"):
      DataConfig(train_fraction=bad).validate()


def test_the_line_reads_the_gain_per_doubling_and_where_it_reaches_a_target():
  from benchmarks import learning_curve  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  points = [{"train_images": n, "test": 0.5 + 0.03 * np.log2(n) + rng.normal(0, 0.002)}
            for n in (400, 400, 800, 800, 1600, 1600)]
  fit = learning_curve.fit_line(points, "test", [0.9])
  assert fit["per_doubling"] == pytest.approx(0.03, abs=0.003)
  assert fit["per_doubling_low"] < fit["per_doubling"] < fit["per_doubling_high"]
  reach = fit["train_images_to_reach"]["0.9"]
  assert reach["slope"] == pytest.approx(2 ** (0.4 / 0.03), rel=0.3)
  assert reach["high"] < reach["slope"] < reach["low"]
  flat = [{"train_images": p["train_images"], "test": 0.6 - 0.01 * i}
          for i, p in enumerate(points)]
  assert learning_curve.fit_line(flat, "test", [0.9])["train_images_to_reach"]["0.9"][
      "slope"] is None


def test_a_flattening_curve_reads_a_smaller_gain_on_its_last_doubling(tmp_path):
  from benchmarks import learning_curve  # pylint: disable=g-import-not-at-top
  gains = {0.25: 0.50, 0.5: 0.60, 1.0: 0.64}  # +10 points, then +4.
  points = [{"fraction": f, "train_images": int(1600 * f), "test": acc + d, "test_tta8": acc,
             "val": acc, "finetune_epoch_seconds": 1.0}
            for f, acc in gains.items() for d in (-0.01, 0.01)]
  payload = learning_curve.analyse(["b"], points, [0.7], str(tmp_path / "c.png"))
  fits = payload["fits"]
  assert fits["all"]["test"]["per_doubling"] == pytest.approx(0.07)
  assert fits["last_doubling"]["test"]["per_doubling"] == pytest.approx(0.04)
  assert fits["last_doubling"]["test"]["points"] == 4
  assert payload["by_fraction"]["0.25"]["test"]["mean"] == pytest.approx(0.50)
  assert os.path.getsize(tmp_path / "c.png") > 0
  text = "\n".join(learning_curve.markdown(payload))
  assert "| last doubling (4 models) | test | +4.0% (" in text
  one = learning_curve.analyse(["b"], [p for p in points if p["fraction"] < 1], [0.7],
                               str(tmp_path / "d.png"))
  assert list(one["fits"]) == ["all"]  # No two fractions at or above a half: no such line.


def test_learning_curve_reruns_the_recipe_on_shares_of_the_lesions(built, tmp_path):
  """Two re-runs of the smoke build on half its training lesions: each trains on half of each
  class, with its own lesions, and is scored on the build's own test images; the build itself
  is the whole-split point. A second call reuses the finished re-runs."""
  cfg, run, _ = built
  out = tmp_path / "curve.json"
  args = ["-m", "benchmarks.learning_curve", f"--build_dir={run.output_dir}",
          "--fractions=0.5", "--draws=2", f"--output_json={out}"]
  done = run_cli(args, timeout=900)
  assert done.returncode == 0, done.stderr[-3000:]
  payload = json.loads(out.read_text())
  whole, *halves = payload["points"]
  assert whole["fraction"] == 1.0 and [p["fraction"] for p in halves] == [0.5, 0.5]
  train = lambda build: splits_lib.read_assignment(os.path.join(build, "splits.csv"))
  base = train(run.output_dir)
  chosen = []
  for p in halves:
    saved = train(p["build"])
    assert {k for k, s in saved.items() if s == "test"} == {
        k for k, s in base.items() if s == "test"}
    chosen.append({k for k, s in saved.items() if s == "train"})
    assert p["train_images"] == len(chosen[-1]) == pytest.approx(whole["train_images"] / 2,
                                                                 abs=3)
    assert 0 <= p["test"] <= 1 and 0 <= p["test_tta8"] <= 1
  assert chosen[0] != chosen[1]
  assert payload["fits"]["all"]["test"]["points"] == 3
  assert os.path.exists(tmp_path / "curve.png") and os.path.exists(tmp_path / "curve.md")
  again = run_cli(args, timeout=900)
  assert again.returncode == 0 and "draw 1, in" not in again.stdout
  assert json.loads(out.read_text())["points"] == payload["points"]


def test_bad_fractions_are_one_line(tmp_path):
  done = run_cli(["-m", "benchmarks.learning_curve", f"--build_dir={tmp_path}",
                  "--fractions=2"])
  assert done.returncode != 0 and "Traceback" not in done.stderr
  assert "--fractions and --targets must be in (0, 1)" in done.stderr.strip().splitlines()[-1]


def _fake_build(root, test_keys, config=None):
  """A finished build's files as the benchmark checks them (the model file is not read)."""
  from pipeline.config import BuildConfig as Config  # pylint: disable=g-import-not-at-top
  os.makedirs(root, exist_ok=True)
  rows = ["key,label,group,split", "a,x,a,train", "b,y,b,train"]
  rows += [f"{k},x,{k},test" for k in test_keys]
  (root / "splits.csv").write_text("\n".join(rows) + "\n")
  (root / "model_float.keras").write_text("")
  (root / "report.json").write_text("{}")
  (config or Config()).save(str(root / "config.json"))
  return root


def test_builds_of_another_split_are_one_line(tmp_path):
  a = _fake_build(tmp_path / "a", ["t1", "t2"])
  b = _fake_build(tmp_path / "b", ["t1", "t3"])
  done = run_cli(["-m", "benchmarks.learning_curve", f"--build_dir={a}", f"--build_dir={b}",
                  f"--output_json={tmp_path / 'c.json'}"])
  assert done.returncode != 0 and "Traceback" not in done.stderr
  assert done.stderr.strip().splitlines()[-1].endswith(
      "has another test split than --build_dir=" + str(a) + "; give builds of one split "
      "(--split_file)")


def test_a_finished_rerun_of_another_recipe_is_not_reused(tmp_path):
  from benchmarks import learning_curve  # pylint: disable=g-import-not-at-top
  build = _fake_build(tmp_path / "build", ["t1"])
  out = tmp_path / "work" / "fraction0.5-draw1"
  _fake_build(out, ["t1"], BuildConfig(seed=7))  # Someone else's re-run in that folder.
  (out / "build_state.json").write_text(json.dumps({"completed": ["data", "transfer",
                                                                  "finetune", "crt"]}))
  with pytest.raises(PipelineError, match="holds a re-run of another build's recipe"):
    learning_curve.rerun(str(build), 0.5, 1, str(out))
