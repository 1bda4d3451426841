"""One smoke build through the real entry function, checked the way an app and QA would."""

import json
import os

import numpy as np
import pytest

from pipeline import assets as assets_lib
from pipeline import export as export_lib
from pipeline import labels as labels_lib
from pipeline import tflite_metadata
from pipeline.apps import check as app_check
from pipeline.apps import runtimes
from pipeline.errors import PipelineError
from pipeline.preprocessing import MOBILENET_V2
from pipeline.runner import LiteRunner
from tests.conftest import run_cli


def _read(path):
  with open(path, "rb") as f:
    return f.read()


def test_artifacts_exist(built):
  cfg, run, _ = built
  for name in ("config.json", "labels.txt", "splits.csv", "data_report.json",
               "model_float.keras", "model_int8.tflite", "model_int8_ptq.tflite",
               "model_float16.tflite", "model_float32.tflite", "report.json", "report.md",
               "training_curves.png", "confusion_matrix.png", "MODEL_CARD.md"):
    assert os.path.isfile(os.path.join(run.output_dir, name)), name
  assert os.path.isdir(os.path.join(run.output_dir, "tensorboard"))
  saved = json.load(open(os.path.join(run.output_dir, "config.json")))
  assert saved["model"]["alpha"] == 0.35 and saved["data"]["image_size"] == 48


def test_int8_has_uint8_io_int8_weights_and_takes_raw_pixels(built):
  cfg, run, report = built
  blob = _read(os.path.join(run.output_dir, "model_int8.tflite"))
  summary = export_lib.check_int8(blob, "uint8", MOBILENET_V2, require_raw_pixels=True)
  assert summary["input_dtype"] == summary["output_dtype"] == "uint8"
  assert summary["conv_weight_dtypes"] == ["int8"]
  assert summary["input_shape"] == [1, 48, 48, 3]
  assert report["tensors"]["int8"]["input_is_raw_pixels"]


def test_embedded_metadata_matches_labels_and_config(built):
  cfg, run, report = built
  labels = labels_lib.read_labels(os.path.join(run.output_dir, "labels.txt"))
  for variant in ("int8", "int8_tta8", "int8_ptq", "float16", "float32"):
    meta = tflite_metadata.read(_read(os.path.join(run.output_dir, f"model_{variant}.tflite")))
    assert tuple(meta["labels"]) == labels, variant
    assert tuple(meta["display_names"]) == labels  # Synthetic classes have no display names.
    assert meta["mean"] == [127.5] * 3 and meta["std"] == [127.5] * 3
    assert "Not a diagnostic device." in meta["description"]
    for key in ("name", "version", "author", "license"):
      assert meta[key] == report["metadata"][key] and meta[key]
  with open(os.path.join(run.assets_dir, "labels.txt")) as f:
    assert tuple(f.read().split()) == labels


def test_int8_accuracy_is_high_on_separable_data(built):
  _, _, report = built
  # A label-order or normalization bug anywhere on the int8 path turns this red.
  assert report["models"]["int8"]["accuracy"] >= 0.9, report["models"]["int8"]
  assert report["models"]["float32"]["accuracy"] >= 0.9
  assert report["gate"]["passed"]


@pytest.mark.parametrize("runtime", runtimes.ALL, ids=lambda r: r.key)
def test_app_runtimes_agree_with_interpreter(built, tmp_path, runtime):
  from PIL import Image
  cfg, run, report = built
  for variant in ("int8", "int8_tta8"):  # Both shipped files, as an app loads them.
    checked = report["app_runtimes"][variant][runtime.key]
    assert checked["status"] == "passed" and checked["agree"] == checked["images"] > 0, checked
  # Fresh images, classified as an app would from the shipped folder.
  model = os.path.join(run.assets_dir, "model.tflite")
  rng = np.random.default_rng(5)
  from pipeline import synthetic
  pixels = np.stack([synthetic.make_image(i % 3, 48, rng) for i in range(6)])
  paths = []
  for i, img in enumerate(pixels):
    paths.append(str(tmp_path / f"{i}.png"))
    Image.fromarray(img).save(paths[-1])
  answers = runtimes.classify(runtime, model, paths)
  probs = LiteRunner(model, MOBILENET_V2).predict(pixels)
  labels = labels_lib.read_labels(os.path.join(run.output_dir, "labels.txt"))
  for categories, p in zip(answers, probs):
    assert len(categories) == len(labels)  # Every class, as the apps' default maxResults gives.
    assert p[categories[0]["index"]] == pytest.approx(p.max(), abs=1e-6)
    for c in categories:
      assert c["label"] == labels[c["index"]]
      assert c["score"] == pytest.approx(p[c["index"]], abs=app_check.SCORE_TOLERANCE)
  assert len({a[0]["label"] for a in answers}) >= 2  # Not a constant answer.


def test_app_runtimes_answer_in_image_order_when_their_images_are_split(built, tmp_path):
  """Each runtime's images are dealt to several children (runtimes.SHARDS): the answers come
  back per model in image order, as from one child, and those are the answers from files."""
  from pipeline import synthetic  # pylint: disable=g-import-not-at-top
  from PIL import Image  # pylint: disable=g-import-not-at-top
  _, run, _ = built
  models = [os.path.join(run.assets_dir, "model.tflite"),
            os.path.join(run.output_dir, "model_float32.tflite")]
  rng = np.random.default_rng(3)
  pixels = np.stack([synthetic.make_image(i % 3, 48, rng) for i in range(7)])
  whole, _ = runtimes.classify_everywhere(models, pixels, str(tmp_path), shards=1)
  split, _ = runtimes.classify_everywhere(models, pixels, str(tmp_path), shards=3)
  paths = [str(tmp_path / f"{i}.png") for i in range(len(pixels))]
  for path, img in zip(paths, pixels):
    Image.fromarray(img).save(path)
  for runtime in runtimes.ALL:
    assert split[runtime.key] == whole[runtime.key]
    assert [len(answers) for answers in split[runtime.key]] == [7, 7]
    assert split[runtime.key] == runtimes.classify_models(runtime, models, paths)
  assert len({a[0]["label"] for a in whole["task_library"][0]}) >= 2  # Not a constant answer.


def test_missing_mediapipe_environment_skips_its_check_in_one_line(built, tmp_path,
                                                                   monkeypatch):
  _, run, _ = built
  monkeypatch.setenv(runtimes.MEDIAPIPE_PYTHON_ENV, str(tmp_path / "no-such-python"))
  from pipeline import synthetic
  pixels = np.stack([synthetic.make_image(i, 48, np.random.default_rng(i)) for i in range(2)])
  model = _read(os.path.join(run.assets_dir, "model.tflite"))
  probs = LiteRunner(model, MOBILENET_V2).predict(pixels)
  results, _ = app_check.check_models(
      {"model": model}, pixels, ["a", "b"],
      labels_lib.read_labels(os.path.join(run.output_dir, "labels.txt")), str(tmp_path),
      predict=lambda: {"model": probs})
  result = results["model"]
  assert result["task_library"]["status"] == "passed"
  skipped = result["mediapipe_tasks"]
  assert skipped["status"] == "skipped" and "\n" not in skipped["message"]
  assert "make venv-mediapipe" in skipped["message"]


def test_a_runtime_that_disagrees_with_the_interpreter_fails_the_check():
  probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]], np.float32)
  labels = ("a", "b", "c")

  def answers(scores):
    return [[{"index": j, "label": labels[j], "score": float(s[j])}
             for j in np.argsort(-s)] for s in scores]

  ok = app_check.compare("X", answers(probs), probs, ["k0", "k1"], labels)
  assert ok["agree"] == 2 and ok["max_score_diff"] == 0
  swapped = probs[:, ::-1].copy()  # Labels in the wrong order.
  with pytest.raises(PipelineError, match="top-1 .* on test image k0"):
    app_check.compare("X", answers(swapped), probs, ["k0", "k1"], labels)
  off = probs + np.array([[0, 0, 0], [0, 0.02, -0.02]], np.float32)  # Same pick, wrong scores.
  with pytest.raises(PipelineError, match="scores differ .* on test image k1"):
    app_check.compare("X", answers(off), probs, ["k0", "k1"], labels)
  # A near-tie that a rounding difference flips is not a wrong model: the runtime picks b,
  # the interpreter a, one step (1/256) apart; five steps apart is a real disagreement.
  step = 1 / 256
  tie = np.array([[0.5, 0.5 - step, 0.0], [0.1, 0.3, 0.6]], np.float32)
  runtime = tie.copy()
  runtime[0] = [0.5 - step, 0.5, 0.0]
  near = app_check.compare("X", answers(runtime), tie, ["k0", "k1"], labels)
  assert near["agree"] == 2 and near["near_ties"] == 1 and "1 near a tie" in near["message"]
  apart = np.array([[0.5, 0.5 - 5 * step, 0.0], [0.1, 0.3, 0.6]], np.float32)
  runtime[0] = [0.5 - 5 * step, 0.5, 0.0]  # Picks b, which the interpreter scores 5 steps lower.
  with pytest.raises(PipelineError, match="top-1 .* 4 output steps on test image k0"):
    app_check.compare("X", answers(runtime), apart, ["k0", "k1"], labels)
  # Kernel rounding (Task Library's own TFLite): a few steps on a few images passes; the
  # same few steps on many images is a wrong encoding.
  many = np.tile(probs, (10, 1))  # 20 images.
  keys = [f"k{i}" for i in range(len(many))]
  rounded = many.copy()
  rounded[0] += [-3 * step, 3 * step, 0]
  ok = app_check.compare("X", answers(rounded), many, keys, labels)
  assert ok["within_one_step"] == 0.95 and ok["max_score_diff"] == pytest.approx(3 * step)
  rounded[1] += [-2 * step, 2 * step, 0]
  with pytest.raises(PipelineError, match="more than one output step on 10% of the 20"):
    app_check.compare("X", answers(rounded), many, keys, labels)
  renamed = answers(probs)
  renamed[0][0]["label"] = "b"
  with pytest.raises(PipelineError, match="embedded labels"):
    app_check.compare("X", renamed, probs, ["k0", "k1"], labels)


def test_assets_are_complete_and_snippets_match_the_model(built):
  cfg, run, report = built
  files = sorted(os.listdir(run.assets_dir))
  assert files == ["MODEL_CARD.md", "README.md", "labels.txt", "model.tflite",
                   "model_float16.tflite", "model_tta8.tflite", "referral.json"]
  assert _read(os.path.join(run.assets_dir, "model_float16.tflite")) == _read(
      os.path.join(run.output_dir, "model_float16.tflite"))
  assert _read(os.path.join(run.assets_dir, "model_tta8.tflite")) == _read(
      os.path.join(run.output_dir, "model_int8_tta8.tflite"))
  assert _read(os.path.join(run.assets_dir, "model.tflite")) == _read(
      os.path.join(run.output_dir, "model_int8.tflite"))
  readme = open(os.path.join(run.assets_dir, "README.md")).read()
  for needle in ('"model.tflite"', "createFromFileAndOptions", "setModelAssetPath",
                 "## `model.tflite` or `model_tta8.tflite`", "x its latency on this machine",
                 'forResource: "model", ofType: "tflite"',
                 "`uint8` tensor of shape [1, 48, 48, 3]",
                 # iOS: float16 for the Core ML delegate, normalized by hand, and the table
                 # to choose a file by.
                 "CoreMLDelegate()", 'forResource: "model_float16", ofType: "tflite"',
                 "let mean: [Float32] = [127.5, 127.5, 127.5]", "| `model_float16.tflite` | "):
    assert needle in readme, needle
  assert report["app_runtimes"]["float16"]  # Checked in both app runtimes like the others.
  card = open(os.path.join(run.assets_dir, "MODEL_CARD.md")).read()
  for needle in ("not a diagnostic device", "Intended use", "Limitations", "Latency",
                 "Per-class recall", "| train |",
                 "then quantization-aware training (distilled from the float model)",
                 "Pipeline demo classifier (synthetic colour images", "## Referral threshold",
                 "## Parity gate (int8 against float32)", "McNemar",
                 "## Checked in the app runtimes", "`model.tflite`: TFLite Task Library "
                 "ImageClassifier: top-1 equals the interpreter's", "`model_tta8.tflite`: "
                 "MediaPipe Tasks ImageClassifier: top-1 equals",
                 "## The 8-view variant (`model_tta8.tflite`)", "`model_float16.tflite`: TFLite "
                 "Task Library ImageClassifier: top-1 equals",
                 "of new serious cases like them", "the split-conformal rank"):
    assert needle in card, needle
  # Traceable: the card names the shipped file's SHA-256, the report the commit it came from.
  import hashlib
  sha = hashlib.sha256(_read(os.path.join(run.assets_dir, "model.tflite"))).hexdigest()
  assert f"`model.tflite` SHA-256: `{sha}`" in card
  assert report["files"]["int8"]["sha256"] == sha
  assert report["provenance"]["git_commit"]  # The suite runs in a git checkout.
  assert report["provenance"]["git_commit"].split("+")[0] in open(
      os.path.join(run.output_dir, "report.md")).read()
  meta = tflite_metadata.read(_read(os.path.join(run.assets_dir, "model.tflite")))
  assert report["provenance"]["git_commit"][:12] in meta["version"]
  # The demo's card speaks of the demo, not of skin lesions or HAM10000.
  assert "Demonstrating and testing the pipeline" in card and "knows nothing about skin" in card
  assert "HAM10000" not in card and "skin lesion should be examined" not in card
  assert 'open("referral.json")' in readme and "referral.json" in readme
  # A build whose 8-view model failed its parity check ships model.tflite alone: its card
  # then says nothing of model_tta8.tflite (the stage passes no 8-view summary).
  alone = assets_lib.model_card(report["metadata"], report, labels_lib.read_labels(
      os.path.join(run.output_dir, "labels.txt")), None, tta=None)
  assert "model_tta8" not in alone and "`model.tflite`: MediaPipe Tasks" in alone


def test_predict_cli(built, tmp_path):
  from PIL import Image
  from pipeline import synthetic
  cfg, run, _ = built
  model = os.path.join(run.assets_dir, "model.tflite")
  big = np.asarray(Image.fromarray(synthetic.make_image(0, 48, np.random.default_rng(1)))
                   .resize((300, 200)))
  Image.fromarray(big).save(tmp_path / "photo.jpg")
  proc = run_cli(["-m", "pipeline.predict", f"--model={model}", str(tmp_path / "photo.jpg")])
  assert proc.returncode == 0, proc.stderr
  assert proc.stderr == ""  # No TensorFlow: nothing it did not mean to print.
  head, lines = proc.stdout.splitlines()[:2], proc.stdout.splitlines()[2:]
  assert head[0].startswith("model: Pipeline demo classifier") and "(version " in head[0]
  assert head[1].startswith("warning: this is the pipeline's synthetic demo model")
  from pipeline import images as images_lib
  pixels, _ = images_lib.load_rgb(str(tmp_path / "photo.jpg"), 48)
  probs = LiteRunner(model, MOBILENET_V2).predict(pixels[None])[0]
  labels = labels_lib.read_labels(os.path.join(run.output_dir, "labels.txt"))
  order = np.argsort(-probs, kind="stable")
  assert [l.split()[1] for l in lines[1:4]] == [labels[i] for i in order]  # Same ranking.
  assert float(lines[1].split()[0]) == pytest.approx(probs[order[0]], abs=1e-3)
  assert "not a diagnostic device" in proc.stdout
  # Top 5 by default = every class of 3; then the referral decision of the shipped threshold.
  referral = json.load(open(os.path.join(run.assets_dir, "referral.json")))
  refer = probs[labels.index("red")] >= referral["threshold"]
  assert lines[4].split()[:2] == ["refer:", "yes" if refer else "no"], lines
  # A copy of the model elsewhere has no referral file: no decision is made up.
  (tmp_path / "alone").mkdir()
  (tmp_path / "alone" / "model.tflite").write_bytes(_read(model))
  alone = run_cli(["-m", "pipeline.predict", f"--model={tmp_path / 'alone' / 'model.tflite'}",
                   str(tmp_path / "photo.jpg")])
  assert alone.returncode == 0 and "refer:" not in alone.stdout
  # One unreadable file among good ones: the good ones are classified, the bad one gets its
  # own line on stderr, and the exit code says something failed.
  (tmp_path / "notes.txt").write_text("hello")
  bad = run_cli(["-m", "pipeline.predict", f"--model={model}", "--json", "--top_k=2",
                 str(tmp_path / "photo.jpg"), str(tmp_path / "notes.txt"),
                 str(tmp_path / "photo.jpg")])
  assert bad.returncode == 1
  rows = [json.loads(line) for line in bad.stdout.splitlines()]
  assert [r["image"] for r in rows] == [str(tmp_path / f) for f in ("photo.jpg", "notes.txt",
                                                                     "photo.jpg")]
  assert [t["label"] for t in rows[0]["top"]] == [labels[i] for i in order[:2]]
  assert rows[0]["model"]["name"].startswith("Pipeline demo classifier") and "error" in rows[1]
  assert bad.stderr.strip().splitlines() == [
      f"pipeline.predict: error: {tmp_path / 'notes.txt'}: {rows[1]['error']}"]


def test_shipped_float_model_is_the_last_epoch_with_the_crt_classifier(built):
  """The build keeps the fine-tune's last epoch and re-fits its classifier (the crt stage):
  a cRT refit computed apart from the build, on its frozen features, gives the float32 file's
  probabilities through the interpreter, which takes raw pixels and normalizes them itself."""
  cfg, run, report = built
  assert cfg.train.crt
  assert cfg.train.finetune_class_balance == "sqrt"  # The default.
  finetune = report["training"]["finetune"]
  assert finetune["kept_epoch"] == cfg.train.finetune.epochs
  assert report["crt"]["images"] == report["data"]["totals"]["train"]
  assert "cRT" in open(os.path.join(run.output_dir, "report.md"), encoding="utf-8").read()
  card = open(os.path.join(run.assets_dir, "MODEL_CARD.md"), encoding="utf-8").read()
  assert (f"fine-tuning (top {cfg.train.finetune_layers} backbone layers; square-root inverse-"
          f"frequency class weights), the classifier re-fit "
          f"on the frozen features with every class weighted equally (cRT, C = "
          f"{cfg.train.crt_c:g}), then quantization-aware training") in card
  from pipeline import data as data_lib  # pylint: disable=g-import-not-at-top
  from pipeline import model as model_lib  # pylint: disable=g-import-not-at-top
  from pipeline.tf_compat import keras  # pylint: disable=g-import-not-at-top
  from pipeline.train import crt as crt_lib  # pylint: disable=g-import-not-at-top
  splits = data_lib.load(cfg.data, cfg.seed, split_file=os.path.join(run.output_dir, "splits.csv"),
                         synthetic_root=os.path.join(run.output_dir, "synthetic_data")).splits
  train, test = splits["train"], splits["test"]
  tflite = LiteRunner(os.path.join(run.output_dir, "model_float32.tflite"), MOBILENET_V2)
  expected = tflite.predict(test.pixels())
  # The cRT classifier refit apart from the build, on the shipped backbone's frozen features,
  # gives the float32 file's probabilities through the interpreter (raw pixels in).
  norm = cfg.model.normalization
  extractor = model_lib.feature_extractor(keras.models.load_model(
      os.path.join(run.output_dir, "model_float.keras"), compile=False))
  train_x, test_x = (extractor.predict(norm.apply_np(s.pixels()), verbose=0)
                     for s in (train, test))
  kernel, bias = crt_lib.fit_classifier(train_x, train.labels, len(report["data"]["labels"]),
                                        cfg.train.crt_c)
  logits = test_x @ kernel + bias
  probs = np.exp(logits - logits.max(axis=1, keepdims=True))
  np.testing.assert_allclose(probs / probs.sum(axis=1, keepdims=True), expected, atol=2e-3)


def test_the_builds_keras_model_loads_like_its_float32_tflite(built, tmp_path):
  from pipeline import synthetic
  from pipeline.runner import KerasRunner, load_model_file
  cfg, run, _ = built
  keras_runner, keras_meta = load_model_file(os.path.join(run.output_dir, "model_float.keras"))
  lite_runner, lite_meta = load_model_file(os.path.join(run.output_dir, "model_float32.tflite"))
  assert isinstance(keras_runner, KerasRunner)
  assert keras_meta["labels"] == lite_meta["labels"]
  assert keras_meta["mean"] == lite_meta["mean"] and keras_meta["std"] == lite_meta["std"]
  rng = np.random.default_rng(7)
  pixels = np.stack([synthetic.make_image(i % 3, 48, rng) for i in range(6)])
  np.testing.assert_allclose(keras_runner.predict(pixels), lite_runner.predict(pixels), atol=1e-4)
  # Outside a build directory the .keras has no labels: one clear error.
  lonely = tmp_path / "model_float.keras"
  lonely.write_bytes(_read(os.path.join(run.output_dir, "model_float.keras")))
  with pytest.raises(PipelineError, match="labels.txt and config.json"):
    load_model_file(str(lonely))


def test_keras_qat_model_and_int8_tflite_agree(built):
  """The shipped int8 model computes what QAT trained: it agrees with the Keras QAT model on
  the test images, and every activation range QAT learned is the scale of one of its int8
  tensors. Converting the float model instead (PTQ: its converter-calibrated scales matched
  56 of the 64 learned ranges), or QAT ranges the converter does not keep, turn this red.

  (It compared outputs on noise images before: on a smoke build whose outputs saturate even
  there, every model agrees to within an output step and PTQ passed that comparison.)"""
  from pipeline import data as data_lib
  from pipeline.tf_compat import keras, tf
  from pipeline.train import qat as qat_lib
  cfg, run, _ = built
  out, norm = run.output_dir, cfg.model.normalization
  float_model = keras.models.load_model(os.path.join(out, "model_float.keras"))
  qat = qat_lib.quantize_model(float_model, cfg.train.finetune_layers, norm)
  qat.load_weights(os.path.join(out, "checkpoints", "qat_final_weights")).expect_partial()
  qat_lib.pin_input_range(qat, norm)
  lite = LiteRunner(os.path.join(out, "model_int8.tflite"), norm)
  test = data_lib.load(cfg.data, cfg.seed, split_file=os.path.join(out, "splits.csv"),
                       synthetic_root=os.path.join(out, "synthetic_data"),
                       only_splits=("test",)).splits["test"]
  agree = (qat.predict(norm.apply_np(test.pixels()), verbose=0).argmax(1) ==
           lite.predict(test.pixels()).argmax(1)).mean()
  assert agree >= 0.95
  # Per quantized activation: the int8 scale its learned range gives.
  learned = [float(vmax.numpy() - vmin.numpy()) / 255
             for ranges in qat_lib.activation_ranges(qat).values()
             for _, vmin, vmax in ranges]
  interpreter = tf.lite.Interpreter(model_path=os.path.join(out, "model_int8.tflite"))
  scales = np.array([t["quantization_parameters"]["scales"][0]
                     for t in interpreter.get_tensor_details()
                     if len(t["quantization_parameters"]["scales"]) == 1])
  missing = [s for s in learned if not np.any(np.abs(scales - s) <= 1e-3 * s)]
  assert len(learned) > 20 and not missing, (len(learned), missing)


def test_tta8_model_is_the_int8_model_averaged_over_eight_views(built):
  from pipeline import preprocessing
  cfg, run, report = built
  test = report["models"]["int8_tta8"]
  assert test["reference"] == "float32_tta8" and "paired" in test
  assert report["gate"]["other_variants"]["int8_tta8"] is True
  tta = LiteRunner(os.path.join(run.output_dir, "model_int8_tta8.tflite"), MOBILENET_V2)
  single = LiteRunner(os.path.join(run.output_dir, "model_int8.tflite"), MOBILENET_V2)
  from pipeline import synthetic
  rng = np.random.default_rng(11)
  pixels = np.stack([synthetic.make_image(i % 3, 48, rng) for i in range(12)])
  pixels[:, :8, :20] = 0  # Not symmetric: each view is a different image.
  expected = np.mean([single.predict(preprocessing.dihedral_view_np(pixels, k, m))
                      for k, m in preprocessing.DIHEDRAL], axis=0)
  got = tta.predict(pixels)
  assert got.shape == expected.shape == (12, 3)
  # Its own output quantization (1/256) and int8 rounding of the mean: a few steps at most.
  np.testing.assert_allclose(got, expected, atol=0.03)
  assert not np.allclose(got, single.predict(pixels), atol=0.03)  # Not the plain model.


def test_float32_over_eight_views_reuses_its_plain_view_exactly(built):
  """int8_tta8's paired reference takes float32's probabilities on the images as they are for
  its first view instead of computing them again: the same mean, bit for bit."""
  from pipeline import evaluate  # pylint: disable=g-import-not-at-top
  from pipeline import synthetic  # pylint: disable=g-import-not-at-top
  _, run, _ = built
  blob = open(os.path.join(run.output_dir, "model_float32.tflite"), "rb").read()
  labels = labels_lib.read_labels(os.path.join(run.output_dir, labels_lib.FILE_NAME))[::-1]
  rng = np.random.default_rng(5)
  pixels = np.stack([synthetic.make_image(i % 3, 48, rng) for i in range(6)])
  pixels[:, :8, :20] = 0  # Not symmetric: each view is a different image.
  as_is = evaluate.predict_models({"float32": blob}, pixels, labels, MOBILENET_V2)["float32"]
  np.testing.assert_array_equal(
      evaluate.predict_dihedral_mean(blob, pixels, labels, MOBILENET_V2, as_is=as_is),
      evaluate.predict_dihedral_mean(blob, pixels, labels, MOBILENET_V2))


def test_rerun_from_metadata_reuses_the_converted_files(built, tmp_path):
  """--rerun_from=metadata (and --resume after a failed metadata stage) takes the export
  stage's files as the converter left them, checks them again, and writes the metadata anew;
  nothing is converted twice."""
  import shutil  # pylint: disable=g-import-not-at-top
  from pipeline import config as config_lib  # pylint: disable=g-import-not-at-top
  from pipeline import stages  # pylint: disable=g-import-not-at-top
  from pipeline.stages import export as export_stage  # pylint: disable=g-import-not-at-top
  cfg, run, report = built
  out = str(tmp_path / "build")
  shutil.copytree(run.output_dir, out)
  kept = os.path.join(out, export_stage.KEPT_DIR, "model_int8.tflite")
  with pytest.raises(PipelineError, match="no readable TFLite metadata"):
    tflite_metadata.read(_read(kept))  # As the converter left it.
  os.remove(os.path.join(out, "model_int8.tflite"))  # Metadata died half-way through.
  lines = []
  again = stages.run(cfg, config_lib.smoke_run(out, rerun_from="metadata", stop_after="metadata"),
                     log=lines.append)
  log = "\n".join(lines)
  assert "export: reusing the finished stage" in log and "converted in" not in log, log
  assert "metadata: written and read back on" in log
  assert again["tensors"] == report["tensors"]  # The same files, checked the same way.
  meta = tflite_metadata.read(_read(os.path.join(out, "model_int8.tflite")))
  assert meta["labels"] == list(labels_lib.read_labels(os.path.join(out, "labels.txt")))


def test_predictions_csv_is_the_evaluation_image_by_image(built):
  """QA rebuilds the report's figures from predictions.csv alone."""
  import csv  # pylint: disable=g-import-not-at-top
  cfg, run, report = built
  with open(os.path.join(run.output_dir, "predictions.csv"), newline="") as f:
    rows = list(csv.DictReader(f))
  assert len(rows) == report["data"]["totals"]["test"]
  int8 = report["models"]["int8"]
  assert np.mean([r["int8_top1"] == r["true"] for r in rows]) == pytest.approx(int8["accuracy"])
  assert np.mean([r["int8_agrees_with_float32"] == "true" for r in rows]) == pytest.approx(
      int8["top1_agreement"])
  serious = [r for r in rows if r["true"] in cfg.referral.malignant_classes]
  assert np.mean([r["refer"] == "true" for r in serious]) == pytest.approx(
      report["referral"]["test"]["int8"]["sensitivity"])
  assert all(float(r["int8_top1_score"]) >= float(r["int8_top2_score"]) for r in rows)


def test_report_md_times_every_stage_with_its_share(built):
  from pipeline import report as report_lib  # pylint: disable=g-import-not-at-top
  _, run, report = built
  text = open(os.path.join(run.output_dir, "report.md"), encoding="utf-8").read()
  table = text.split("## Stage times")[1]
  for stage in report["stage_seconds"]:
    assert f"| {stage} | " in table, stage
  assert "| **total** |" in table and "s per epoch on this machine" in table
  line = report_lib.stage_time_line(report)
  assert line.startswith("stage times (") and "finetune" in line and "s per epoch" in line


def test_the_build_maps_int8_error_layer_by_layer(built):
  """report.json keeps every layer, report.md names the worst, the plot is written."""
  _, run, report = built
  error_map = report["layer_error"]
  assert error_map["images"] == min(32, report["data"]["totals"]["test"])
  assert len(error_map["layers"]) > 50 and len(error_map["worst"]) == 3  # MobileNetV2's ops.
  text = open(os.path.join(run.output_dir, "report.md"), encoding="utf-8").read()
  section = text.split("## Where int8 loses precision")[1]
  for i in error_map["worst"]:
    assert f"| {error_map['layers'][i]['layer']} | " in section
  assert os.path.isfile(os.path.join(run.output_dir, "layer_error.png"))


def _toolkit_schema():
  """Model Card Toolkit's own JSON schema, read from the installed package (importing the
  package would pull in TFX)."""
  import importlib.util  # pylint: disable=g-import-not-at-top
  from pipeline import model_card  # pylint: disable=g-import-not-at-top
  root = importlib.util.find_spec("model_card_toolkit").submodule_search_locations[0]
  with open(os.path.join(root, "schema", f"v{model_card.MCT_SCHEMA_VERSION}",
                         "model_card.schema.json"), encoding="utf-8") as f:
    return json.load(f)


def test_model_card_has_a_hugging_face_header_and_a_toolkit_json(built):
  import jsonschema  # pylint: disable=g-import-not-at-top
  from huggingface_hub import ModelCard  # pylint: disable=g-import-not-at-top
  _, run, report = built
  int8 = report["models"]["int8"]
  for folder in (run.output_dir, run.assets_dir):  # The app folder's card is the same.
    card = ModelCard(open(os.path.join(folder, "MODEL_CARD.md"), encoding="utf-8").read())
    assert card.data.license == "apache-2.0" and card.data.library_name == "tflite"
    assert "tflite" in card.data.tags and card.data.datasets == ["synthetic colour images"]
    assert card.data.base_model is None  # The smoke build starts from no weights.
    results = {r.metric_name: r.metric_value for r in card.data.eval_results}
    assert results["int8 balanced accuracy"] == round(int8["balanced_accuracy"], 4)
    assert results["float32 accuracy"] == round(report["models"]["float32"]["accuracy"], 4)
    assert card.text.lstrip().startswith("# Model card:")
  toolkit = json.load(open(os.path.join(run.output_dir, "model_card.json")))
  schema = _toolkit_schema()
  jsonschema.validate(toolkit, schema)
  metrics = {(m["type"], m["slice"]): m for m in
             toolkit["quantitative_analysis"]["performance_metrics"]}
  for label in report["data"]["labels"]:  # Per-class slices, each with its interval.
    m = metrics[("int8 recall", f"test split, class={label}")]
    assert float(m["confidence_interval"]["lower_bound"]) <= float(m["value"]) <= float(
        m["confidence_interval"]["upper_bound"])
  assert metrics[("int8 balanced_accuracy", "test split")]["value"] == (
      f"{int8['balanced_accuracy']:.4f}")
  assert toolkit["considerations"]["limitations"] and toolkit["considerations"]["use_cases"]
  # The schema check bites: a number where the schema wants a string, an unknown field.
  for broken in ({**toolkit, "model_details": {**toolkit["model_details"], "name": 3}},
                 {**toolkit, "owner": "x"}):
    with pytest.raises(jsonschema.ValidationError):
      jsonschema.validate(broken, schema)
