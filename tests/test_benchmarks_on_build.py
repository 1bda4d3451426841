"""The benchmarks' command lines and measurements, run on the shared smoke build: each agrees
with the build's own report where they measure the same thing."""

import json
import os

import numpy as np
import pytest

from pipeline.apps import check as app_check
from tests.conftest import run_cli


def test_benchmark_contracts(built, tmp_path, monkeypatch):
  cfg, run, report = built
  out = run.output_dir
  int8, f32 = os.path.join(out, "model_int8.tflite"), os.path.join(out, "model_float32.tflite")
  lat = run_cli(["-m", "benchmarks.latency", f"--model={int8}", f"--model={f32}",
                 "--threads=1,2", "--runs=5", "--warmup_runs=1", f"--reference={f32}",
                 f"--output_json={tmp_path / 'lat.json'}"])
  assert lat.returncode == 0, lat.stderr
  latency = json.load(open(tmp_path / "lat.json"))
  results = latency["results"]
  # What was measured on what: the machine, the versions, each model's input.
  assert latency["settings"]["cpu_model"] and latency["settings"]["versions"]["ai-edge-litert"]
  assert latency["warnings"] == []  # Both models take the same input.
  assert all(r["input_shape"] == [1, 48, 48, 3] for r in results)
  assert {r["input_dtype"] for r in results} == {"uint8", "float32"}
  assert {(r["model"], r["threads"]) for r in results} == {(int8, 1), (int8, 2), (f32, 1),
                                                            (f32, 2)}
  for r in results:
    for key in ("median_ms", "p90_ms", "min_ms", "size_bytes", "p99_ms", "mean_ms", "std_ms",
                "init_ms", "first_ms", "rss_growth_bytes", "ratio_to_reference"):
      assert key in r, key
  medians = {(r["model"], r["threads"]): r["median_ms"] for r in results}
  for n in (1, 2):  # Each model against the reference at the same thread count.
    assert [r for r in results if r["model"] == int8 and r["threads"] == n][0][
        "ratio_to_reference"] == round(medians[(int8, n)] / medians[(f32, n)], 4)
  assert os.path.isfile(tmp_path / "lat.md")
  # Real images are decoded once at the models' input size (they were decoded at 224).
  from benchmarks import latency as latency_bench  # pylint: disable=g-import-not-at-top
  decoded = []
  load = latency_bench._load_images  # pylint: disable=protected-access
  monkeypatch.setattr(latency_bench, "_load_images",
                      lambda *a, **k: decoded.append(load(*a, **k)) or decoded[-1])
  real = latency_bench.run([int8], [1], runs=2, warmup_runs=0, warmup_seconds=0.0,
                           reference="", images_dir=os.path.join(out, "synthetic_data"), seed=0)
  assert [d.shape[1:] for d in decoded] == [(48, 48, 3)]
  assert real["settings"]["inputs"].endswith("synthetic_data")

  data_dir = os.path.join(out, "synthetic_data")
  acc = run_cli(["-m", "benchmarks.accuracy", f"--model={int8}", f"--float_reference={f32}",
                 "--data_format=folders", f"--data_dir={data_dir}", "--bootstrap_rounds=50",
                 f"--split_file={os.path.join(out, 'splits.csv')}", "--split=test",
                 f"--output_json={tmp_path / 'acc.json'}"])
  assert acc.returncode == 0, acc.stderr
  payload = json.load(open(tmp_path / "acc.json"))
  by_model = {r["model"]: r for r in payload["results"]}
  assert payload["n"] == report["data"]["totals"]["test"]
  for key in ("n", "accuracy", "balanced_accuracy", "per_class_recall", "top2_accuracy",
              "top3_accuracy", "per_class_precision", "per_class_f1", "confusion_matrix", "ci95"):
    assert key in by_model[int8], key
  assert set(by_model[int8]["per_class_recall"]) == {"blue", "green", "red"}
  assert "top1_agreement" in by_model[int8] and "top1_agreement" not in by_model[f32]
  assert os.path.isfile(by_model[int8]["confusion_matrix_png"])
  assert by_model[int8]["accuracy"] >= 0.9
  assert by_model[int8]["gate_default_rule"] is True and "gate_default_rule" not in by_model[f32]
  # Read from files as an app would, the test split gives the build's own paired figures.
  built_paired = report["models"]["int8"]["paired"]
  assert by_model[int8]["paired"]["mcnemar"] == built_paired["mcnemar"]
  assert by_model[int8]["top1_agreement"] == pytest.approx(built_paired["top1_agreement"])
  assert by_model[int8]["disagreements"] == len(built_paired["flips"])


def test_readout_benchmark_on_the_builds_backbones(built, tmp_path):
  cfg, run, report = built
  proc = run_cli(["-m", "benchmarks.readout", f"--build_dir={run.output_dir}", "--train_views=1",
                  "--epoch=best_val", "--crt_c=0.01", "--crt_c=1",
                  f"--output_json={tmp_path / 'readout.json'}"])
  assert proc.returncode == 0, proc.stderr
  payload = json.load(open(tmp_path / "readout.json"))
  (build,) = payload["builds"]
  # Only the epoch asked for, one cRT row per C (the last epoch: test_shipped_float_model_...).
  assert set(build["rows"]) == {"shipped"} | {f"best_val/{c}" for c in (
      "head", "tau_norm", "crt C=0.01", "crt C=1")}
  assert build["n"]["test"] == report["data"]["totals"]["test"]
  # The shipped readout, recomputed from the model's features and its classifier's weights,
  # scores what the build's float32 model scored on the same split.
  assert build["rows"]["shipped"]["test"] == pytest.approx(
      report["models"]["float32"]["balanced_accuracy"], abs=1e-9)
  assert payload["summary"]["shipped"]["test"]["change_mean"] == 0.0
  assert os.path.isfile(tmp_path / "readout.md")


def test_compare_benchmark_pairs_builds(built, tmp_path):
  """A build against itself: every paired change is zero, figures are the report's."""
  _, run, report = built
  proc = run_cli(["-m", "benchmarks.compare", f"--baseline={run.output_dir}",
                  f"--candidate={run.output_dir}", "--paired",
                  f"--output_json={tmp_path / 'compare.json'}"])
  assert proc.returncode == 0, proc.stderr
  payload = json.load(open(tmp_path / "compare.json"))
  for group in ("baseline", "candidate"):
    s = payload["summary"][group]
    assert s["gate_passed"] == 1 and s["builds"] == 1
    for variant, m in report["models"].items():
      assert s["balanced_accuracy"][variant]["mean"] == m["balanced_accuracy"]
      assert s["accuracy"][variant]["mean"] == m["accuracy"]
    assert s["referral"] == {v: {k: {"mean": r[k], "min": r[k], "max": r[k]}
                                 for k in ("sensitivity", "specificity")}
                             for v, r in report["referral"]["test"].items()}
  assert set(payload["paired"]) == set(report["models"])
  assert all(p["changes"] == [0.0] for p in payload["paired"].values())
  assert "| float32 |" in open(tmp_path / "compare.md", encoding="utf-8").read()


def test_referral_benchmark_refits_the_builds_own_threshold(built, tmp_path):
  """The build was fit by today's rule: re-fitting it from the files gives its own figures."""
  _, run, report = built
  proc = run_cli(["-m", "benchmarks.referral", f"--build_dir={run.output_dir}",
                  f"--output_json={tmp_path / 'referral.json'}"])
  assert proc.returncode == 0, proc.stderr
  b, = json.load(open(tmp_path / "referral.json"))["builds"]
  shipped, refit = report["referral"], b["refit"]
  assert b["model"] == "int8" and refit["threshold"] == shipped["threshold"]
  for key in ("validation", "guaranteed"):
    assert refit[key] == shipped[key]
  assert {k: refit["test"]["int8"][k] for k in ("sensitivity", "specificity")} == {
      k: shipped["test"]["int8"][k] for k in ("sensitivity", "specificity")}
  assert "| int8 |" in open(tmp_path / "referral.md", encoding="utf-8").read()
  bad = run_cli(["-m", "benchmarks.referral", f"--build_dir={tmp_path}",
                 f"--output_json={tmp_path / 'bad.json'}"])
  assert bad.returncode != 0 and not os.path.exists(tmp_path / "bad.json")
  assert bad.stderr.strip().splitlines()[-1] == (
      f"benchmarks.referral: error: --build_dir={tmp_path}: no report.json, labels.txt; give "
      "the output directory of a build that got past the evaluate stage")


def test_headroom_benchmark_on_a_builds_test_split(built, tmp_path):
  cfg, run, report = built
  out = run.output_dir
  int8, f32 = os.path.join(out, "model_int8.tflite"), os.path.join(out, "model_float32.tflite")
  data = [f"--build_dir={out}", "--split=test"]  # The build names its dataset and split.
  run = run_cli(["-m", "benchmarks.headroom", f"--model={int8}", f"--model={f32}", *data,
                 "--fit_split=val", "--tta_zooms=0.75",
                 f"--output_json={tmp_path / 'headroom.json'}"])
  assert run.returncode == 0, run.stderr
  payload = json.load(open(tmp_path / "headroom.json"))
  rows = {r["model"]: r for r in payload["rows"]}
  assert set(rows) == {"model_int8.tflite", "model_float32.tflite", "ensemble"}
  assert payload["n"] == report["data"]["totals"]["test"]
  # As shipped, the benchmark agrees with the build's own evaluation of the same split.
  assert rows["model_int8.tflite"]["balanced_accuracy"] == pytest.approx(
      report["models"]["int8"]["balanced_accuracy"])
  for r in rows.values():
    assert {"oracle_offsets", "tta8", "fit_split_offsets", "tta8_fit_split_offsets"} <= set(r)
    assert set(r["tta8_zooms"]) == {"0.75", "all"}
  assert "| TTA8 at 0.75 | all views |" in open(tmp_path / "headroom.md").read()
  # Scoring the split it fits on would be a leak: one clear line, non-zero exit.
  bad = run_cli(["-m", "benchmarks.headroom", f"--model={int8}", *data, "--fit_split=test",
                 f"--output_json={tmp_path / 'bad.json'}"])
  assert bad.returncode != 0 and not os.path.exists(tmp_path / "bad.json")
  assert bad.stderr.strip().splitlines()[-1].startswith("benchmarks.headroom: error: --fit_split")
  both = run_cli(["-m", "benchmarks.accuracy", f"--build_dir={out}", "--data_dir=/elsewhere",
                  f"--output_json={tmp_path / 'both.json'}"])
  assert both.returncode != 0 and "drop --data_dir" in both.stderr.strip().splitlines()[-1]


def test_app_runtimes_benchmark_sets_runtimes_beside_encoding_errors(built, tmp_path):
  from benchmarks import app_runtimes
  step = 1 / 256
  ref = np.array([[0.5, 0.5, 0.0]] * 4, np.float32)
  got = ref + np.array([[0, 0, 0], [step, -step, 0], [3 * step, -3 * step, 0],
                        [-6 * step, 6 * step, 0]], np.float32)
  figures = app_runtimes.step_figures(got, ref)
  assert figures["histogram"] == [1, 1, 0, 1, 0, 0, 1] and figures["max_steps"] == 6
  assert (figures["within_one_step"], figures["within_tolerance"]) == (0.5, 0.75)
  _, run, report = built
  payload = app_runtimes.measure(run.output_dir, ["int8"])
  rows = payload["variants"]["int8"]
  n = report["models"]["int8"]["n"]
  for runtime in ("TFLite Task Library", "MediaPipe Tasks"):
    assert sum(rows[runtime]["histogram"]) == rows[runtime]["images"] == n
    assert rows[runtime]["within_one_step"] >= app_check.ROUNDING_SHARE
  # Swapping red and blue changes what this model sees (its classes are colours).
  assert rows["interpreter, BGR channel order"]["top1_changed"] > 0.2
  lines = app_runtimes.markdown(payload)
  assert sum(line.startswith("| ") for line in lines) == 1 + len(rows)  # Header, rows.


def test_qat_error_benchmark_follows_the_error_from_calibration_to_the_int8_file(built):
  from benchmarks import qat_error
  _, run, report = built
  steps = qat_error.measure([run.output_dir])["builds"][0]["steps"]
  assert [(s["model"], s["against"]) for s in steps] == list(qat_error.STEPS)
  by_step = {(s["model"], s["against"]): s for s in steps}
  # The int8 file is the trained QAT model converted, and it is the build's own int8 model.
  assert by_step[("int8 file", "QAT model as trained")]["top1_agreement"] >= 0.95
  assert by_step[("int8 file", "float model")]["top1_agreement"] == pytest.approx(
      report["models"]["int8"]["top1_agreement"])
  # The trained QAT weights were loaded: QAT moved the model away from its calibrated start.
  assert by_step[steps[0]["model"], "float model"]["mean"] != by_step[
      ("QAT model as trained", "float model")]["mean"]


def test_accuracy_scores_every_image_of_a_new_labeled_set(built, tmp_path):
  # QA's main use: a shipped model on labeled photos it never saw, with no split file.
  from benchmarks import accuracy, common
  from pipeline.config import DataConfig
  _, run, _ = built
  data_dir = os.path.join(run.output_dir, "synthetic_data")
  files = sum(len(f) for _, _, f in os.walk(data_dir))
  dataset = common.Dataset(DataConfig(data_format="folders", data_dir=data_dir), "", "")
  int8 = os.path.join(run.output_dir, "model_int8.tflite")
  payload = accuracy.run([int8], "", dataset, "test", bootstrap_rounds=0, seed=0,
                         plot_dir=str(tmp_path))
  assert payload["n"] == files and payload["split"] == "all"
  assert payload["results"][0]["balanced_accuracy"] > 0.9
