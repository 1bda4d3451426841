"""The benchmarks' command lines and measurements, run on the shared smoke build: each agrees
with the build's own report where they measure the same thing."""

import json
import os

import numpy as np
import pytest

from pipeline.apps import check as app_check
from pipeline.errors import PipelineError
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
  # Every model at every thread count, with and without the default delegate (XNNPACK).
  assert {(r["model"], r["threads"], r["delegate"]) for r in results} == {
      (m, n, d) for m in (int8, f32) for n in (1, 2) for d in ("xnnpack", "none")}
  for r in results:
    for key in ("median_ms", "p90_ms", "min_ms", "max_ms", "size_bytes", "p99_ms", "mean_ms",
                "std_ms", "init_ms", "first_ms", "warmup_mean_ms", "init_memory_bytes",
                "overall_memory_bytes", "peak_rss_bytes", "ratio_to_reference"):
      assert r[key] is not None, key
    assert r["min_ms"] <= r["median_ms"] <= r["max_ms"]
    assert 0 <= r["init_memory_bytes"] and r["overall_memory_bytes"] <= r["peak_rss_bytes"]
  medians = {(r["model"], r["threads"], r["delegate"]): r["median_ms"] for r in results}
  for n, d in ((1, "xnnpack"), (2, "none")):  # Against the reference under the same settings.
    assert [r for r in results if (r["model"], r["threads"], r["delegate"]) == (int8, n, d)][0][
        "ratio_to_reference"] == round(medians[(int8, n, d)] / medians[(f32, n, d)], 4)
  assert "an emulation of a device, not a device" in open(tmp_path / "lat.md").read()
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
  # The build's per-layer map, from the files: the same layers, the same worst ones.
  assert by_model[int8]["layer_error"]["worst"] == report["layer_error"]["worst"]
  assert os.path.isfile(by_model[int8]["layer_error"]["png"])
  assert by_model[f32].get("layer_error") is None
  worst = report["layer_error"]["layers"][report["layer_error"]["worst"][0]]["layer"]
  assert f"| {worst} | " in open(tmp_path / "acc.md").read()


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


def test_latency_names_the_unreadable_image_of_images_dir(built, tmp_path):
  from benchmarks import latency as latency_bench  # pylint: disable=g-import-not-at-top
  from pipeline.errors import PipelineError  # pylint: disable=g-import-not-at-top
  _, run, _ = built
  images = tmp_path / "images"
  images.mkdir()
  from PIL import Image  # pylint: disable=g-import-not-at-top
  Image.new("RGB", (64, 64), (200, 30, 30)).save(images / "a.png")
  (images / "b.jpg").write_bytes(b"not a jpeg")
  with pytest.raises(PipelineError, match="b.jpg: not a readable image.*remove it from"):
    latency_bench.run([os.path.join(run.output_dir, "model_int8.tflite")], [1], runs=1,
                      warmup_runs=0, warmup_seconds=0.0, reference="", images_dir=str(images),
                      seed=0)


def test_crossval_score_moves_agree_with_the_builds_own_parity_figures(built):
  from benchmarks import crossval_paired  # pylint: disable=g-import-not-at-top
  _, run, report = built
  moves = crossval_paired.int8_moves(run.output_dir)  # A build is a fold holding out its test.
  int8 = report["models"]["int8"]
  assert len(moves) == int8["n"]
  # The report's mean is over images and classes; the move is each image's largest class.
  mean, classes = int8["mean_abs_prob_diff"], len(int8["per_class_recall"])
  assert mean - 1e-6 <= moves.mean() <= classes * mean + 1e-6
  assert moves.max() >= (int8["disagreement_max_reference_margin"] or 0) / 2 - 1e-6  # Flips move.


def test_a_split_read_back_indexes_the_builds_labels_when_it_lacks_a_class(built, tmp_path):
  from benchmarks import common  # pylint: disable=g-import-not-at-top
  _, run, _ = built
  out = run.output_dir
  for name in ("config.json", "labels.txt", "synthetic_data"):
    os.symlink(os.path.join(out, name), tmp_path / name)
  labels = open(os.path.join(out, "labels.txt")).read().split()
  _, test = common.build_split(out)
  truth = {k: labels[c] for k, c in zip(test.keys, test.labels)}
  assert set(truth.values()) == set(labels)  # Every class is in the smoke build's test split.
  # The first class's test images moved to training: the test split lacks that class.
  first = {k for k, name in truth.items() if name == labels[0]}
  rows = open(os.path.join(out, "splits.csv")).read().splitlines()
  moved = [row.replace(",test", ",train") if row.split(",")[0] in first else row for row in rows]
  (tmp_path / "splits.csv").write_text("\n".join(moved) + "\n")
  _, test = common.build_split(str(tmp_path))
  assert len(test) == len(truth) - len(first)
  assert all(labels[c] == truth[k] for k, c in zip(test.keys, test.labels))
  # A labels.txt of another build, without the last class: refused, not misread.
  os.unlink(tmp_path / "labels.txt")
  (tmp_path / "labels.txt").write_text("\n".join(labels[:-1]) + "\n")
  with pytest.raises(PipelineError, match=rf"classes \['{labels[-1]}'\] that its labels.txt"):
    common.build_split(str(tmp_path))
