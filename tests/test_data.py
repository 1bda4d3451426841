"""Data stage: formats, bad input, lesion-disjoint stratified splits, one label list."""

import csv
import json
import os

import numpy as np
import pytest
from PIL import Image

from pipeline import data as data_lib
from pipeline import images as images_lib
from pipeline import labels as labels_lib
from pipeline import report as report_lib
from pipeline.config import BuildConfig, DataConfig, RunOptions, TrainConfig, replace
from pipeline.data import readers, splits as splits_lib
from pipeline.stages import data as data_stage
from pipeline.stages.state import BuildState
from pipeline.errors import PipelineError
from tests import imagefiles

SIZE = 32


def _ham_config(dirs, csv_path, **kw):
  return DataConfig(data_format="ham10000", data_dir=dirs, metadata_csv=csv_path,
                    image_size=SIZE, **kw)


def _run(cfg, out, seed=0, split_file=""):
  """The data stage as the build runs it (it writes labels.txt, splits.csv, data_report.json)."""
  config = BuildConfig(seed=seed, data=replace(cfg, split_file=split_file or cfg.split_file))
  os.makedirs(out, exist_ok=True)
  state = BuildState(options=RunOptions(output_dir=str(out)), log=lambda _: None, started="")
  return data_stage.run(config, state).bundle


def _splits_csv(out):
  with open(os.path.join(out, "splits.csv")) as f:
    return list(csv.DictReader(f))


# ---------------------------------------------------------------------------- formats


def test_ham10000_two_folders_lesion_disjoint_stratified(tmp_path):
  dirs, csv_path, rows = imagefiles.ham_dataset(str(tmp_path / "ham"), folders=2,
                                                lesions_with_two_images=5)
  bundle = _run(_ham_config(dirs, csv_path), tmp_path / "out")
  assert bundle.labels == ("akiec", "bcc", "mel", "nv")
  assert labels_lib.read_labels(str(tmp_path / "out" / "labels.txt")) == bundle.labels
  # No lesion crosses splits.
  lesion_of = {r["image_id"]: r["lesion_id"] for r in rows}
  seen = {}
  for row in _splits_csv(tmp_path / "out"):
    lesion = lesion_of[row["key"]]
    assert seen.setdefault(lesion, row["split"]) == row["split"], f"{lesion} crosses splits"
  # Every class appears in every split (stratified).
  for name, split in bundle.splits.items():
    assert set(split.labels.tolist()) == {0, 1, 2, 3}, name
  assert sum(len(s) for s in bundle.splits.values()) == len(rows)
  report = json.load(open(tmp_path / "out" / "data_report.json"))
  assert report["counts"]["train"]["nv"] == int((bundle.splits["train"].labels == 3).sum())
  assert report["class_balance"] == "none" and report["class_weights"] is None  # The default.
  balanced = data_stage.summary("ham10000", bundle, TrainConfig(class_weight="balanced"))
  assert balanced["class_weights"]["nv"] < balanced["class_weights"]["akiec"]
  # --finetune_class_weight: the fine-tune phase's own weights, and report.md names each
  # phase's balance (it once said "the plain loss" of a build that fine-tuned with weights).
  sqrt = data_stage.summary("ham10000", bundle, TrainConfig(finetune_class_weight="sqrt"))
  assert sqrt["class_weights"] is None and sqrt["finetune_class_balance"] == "sqrt"
  tuned = sqrt["finetune_class_weights"]
  assert tuned["nv"] < tuned["akiec"] < balanced["class_weights"]["akiec"]
  report_lib.write_report(str(tmp_path / "r.json"), str(tmp_path / "r.md"),
                          {"name": "r", "data": sqrt})
  text = open(tmp_path / "r.md", encoding="utf-8").read()
  assert "Class balance (transfer and QAT): the plain loss, no class weights." in text
  assert (f"Class balance (fine-tuning): square-root inverse-frequency class weights akiec "
          f"{tuned['akiec']:.3f}, bcc") in text


def test_lesion_groups_never_cross_splits_at_scale():
  rng = np.random.default_rng(0)
  examples = []
  for lesion in range(400):
    label = ["nv", "mel", "bkl"][lesion % 3]
    for k in range(rng.integers(1, 5)):
      examples.append(data_lib.Example(key=f"{lesion}_{k}", label=label, group=f"L{lesion}"))
  assignment = splits_lib.assign(examples, 0.1, 0.2, seed=3)
  by_group = {}
  for e in examples:
    by_group.setdefault(e.group, set()).add(assignment[e.key])
  assert all(len(s) == 1 for s in by_group.values())
  counts = {s: sum(1 for v in assignment.values() if v == s) for s in data_lib.SPLITS}
  assert counts["test"] / len(examples) == pytest.approx(0.2, abs=0.03)
  assert counts["val"] / len(examples) == pytest.approx(0.1, abs=0.03)


def test_split_is_deterministic_per_seed_and_reusable(tmp_path):
  dirs, csv_path, _ = imagefiles.ham_dataset(str(tmp_path / "ham"))
  cfg = _ham_config(dirs, csv_path)
  a = _run(cfg, tmp_path / "a", seed=7)
  b = _run(cfg, tmp_path / "b", seed=7)
  c = _run(cfg, tmp_path / "c", seed=8)
  assert _splits_csv(tmp_path / "a") == _splits_csv(tmp_path / "b")
  assert a.labels == b.labels == c.labels
  assert _splits_csv(tmp_path / "a") != _splits_csv(tmp_path / "c")
  d = _run(cfg, tmp_path / "d", seed=8, split_file=str(tmp_path / "a" / "splits.csv"))
  assert _splits_csv(tmp_path / "d") == _splits_csv(tmp_path / "a")
  assert d.splits["test"].keys == a.splits["test"].keys


def test_folders_format_and_given_test_split(tmp_path):
  root = tmp_path / "dermnet"
  for split, n in (("train", 8), ("test", 3)):
    for cls, colour in (("Eczema", (200, 80, 80)), ("Psoriasis", (80, 80, 200))):
      for i in range(n):
        imagefiles.write(str(root / split / cls / f"{i}.jpg"), colour=colour, seed=i, fmt="JPEG")
  bundle = _run(DataConfig(data_format="folders", data_dir=str(root), image_size=SIZE),
                tmp_path / "out")
  assert bundle.labels == ("Eczema", "Psoriasis")
  assert len(bundle.splits["test"]) == 6
  assert all(k.startswith("test") for k in bundle.splits["test"].keys)
  assert not any(k.startswith("test") for k in bundle.splits["train"].keys)
  assert any("test split" in w for w in bundle.notes.warnings)


def test_hmnist_csv_default_table_and_override(tmp_path):
  rng = np.random.default_rng(0)
  path = tmp_path / "hmnist_28_28_RGB.csv"
  header = [f"pixel{i:04d}" for i in range(28 * 28 * 3)] + ["label"]
  with open(path, "w") as f:
    f.write(",".join(header) + "\n")
    for i in range(24):
      f.write(",".join(str(v) for v in rng.integers(0, 256, 2352)) + f",{[4, 6, 2][i % 3]}\n")
  bundle = _run(DataConfig(data_format="hmnist_csv", metadata_csv=str(path), image_size=SIZE),
                tmp_path / "out")
  assert bundle.labels == ("bkl", "mel", "nv")  # 2 -> bkl, 4 -> nv, 6 -> mel.
  assert bundle.splits["train"].images.shape[1:] == (SIZE, SIZE, 3)  # Upsampled from 28.
  assert any("no lesion ids" in w for w in bundle.notes.warnings)
  custom = _run(DataConfig(data_format="hmnist_csv", metadata_csv=str(path), image_size=SIZE,
                           hmnist_labels="2:a,4:b,6:c"), tmp_path / "out2")
  assert custom.labels == ("a", "b", "c")
  with pytest.raises(PipelineError, match="CODE:NAME"):
    readers.parse_hmnist_labels("4=nv")


def test_synthetic_format_is_deterministic(tmp_path):
  cfg = DataConfig(data_format="synthetic", image_size=SIZE, synthetic_classes=3,
                   synthetic_per_class=10)
  a, b = _run(cfg, tmp_path / "a"), _run(cfg, tmp_path / "b")
  assert a.labels == b.labels == ("blue", "green", "red")
  np.testing.assert_array_equal(a.splits["train"].images, b.splits["train"].images)


# -------------------------------------------------------------------------- bad files


@pytest.mark.parametrize("kind", ["corrupt", "truncated", "zero_byte", "not_image"])
def test_bad_files_are_skipped_with_reason_or_fail_in_strict_mode(tmp_path, kind):
  dirs, csv_path, rows = imagefiles.ham_dataset(str(tmp_path / "ham"))
  victim = rows[-1]["image_id"]
  imagefiles.write_bad(os.path.join(dirs, victim + ".jpg"), kind)
  bundle = _run(_ham_config(dirs, csv_path), tmp_path / "out")
  skipped = json.load(open(tmp_path / "out" / "data_report.json"))["skipped"]
  assert len(skipped) == 1 and victim in skipped[0]["item"], skipped
  expected = {"zero_byte": "zero-byte", "truncated": "not a readable image",
              "corrupt": "not a readable image", "not_image": "not a readable image"}[kind]
  assert expected in skipped[0]["reason"]
  assert victim not in sum((s.keys for s in bundle.splits.values()), [])
  with pytest.raises(PipelineError, match=victim):
    _run(_ham_config(dirs, csv_path, strict=True), tmp_path / "strict")


@pytest.mark.parametrize("mode,fmt,note", [
    ("L", "PNG", "converted L"), ("RGBA", "PNG", "converted RGBA"),
    ("CMYK", "JPEG", "converted CMYK"), ("I;16", "PNG", "converted 16-bit"),
    ("P", "PNG", "converted P"), ("RGB", "PNG", None)])
def test_image_modes_are_converted_to_rgb(tmp_path, mode, fmt, note):
  path = imagefiles.write(str(tmp_path / f"img.{fmt.lower()}"), mode=mode, fmt=fmt,
                          colour=(180, 60, 30))
  arr, got_note = images_lib.load_rgb(path, SIZE)
  assert arr.shape == (SIZE, SIZE, 3) and arr.dtype == np.uint8
  if note:
    assert note in got_note
  else:
    assert got_note == ""
  if mode == "I;16":  # Scaled, not clipped to white.
    assert 40 < arr.mean() < 200


def test_16bit_png_keeps_its_dynamic_range(tmp_path):
  gradient = (np.linspace(0, 65535, 64 * 64).reshape(64, 64)).astype(np.uint16)
  path = str(tmp_path / "g16.png")
  Image.fromarray(gradient, mode="I;16").save(path)
  arr, note = images_lib.load_rgb(path, 64)
  assert "16-bit" in note
  assert arr.min() <= 2 and arr.max() >= 253


def test_large_jpeg_is_decoded_at_reduced_scale(tmp_path):
  big = np.tile(np.linspace(0, 255, 2000, dtype=np.uint8)[None, :, None], (1500, 1, 3))
  path = imagefiles.write(str(tmp_path / "big.jpg"), array=big, fmt="JPEG")
  arr, _ = images_lib.load_rgb(path, SIZE)
  assert arr.shape == (SIZE, SIZE, 3)
  assert arr[:, 0].mean() < 30 and arr[:, -1].mean() > 225  # Still the same picture.


# ---------------------------------------------------------------------------- bad CSV


def test_csv_problems_are_skipped_and_listed(tmp_path):
  dirs, csv_path, rows = imagefiles.ham_dataset(str(tmp_path / "ham"))
  bad_rows = rows + [
      {"lesion_id": "HAM_x1", "image_id": "ISIC_missing", "dx": "nv"},  # No image file.
      {"lesion_id": "HAM_x2", "image_id": rows[0]["image_id"], "dx": "nv"},  # Duplicate id.
      {"lesion_id": "HAM_x3", "image_id": rows[1]["image_id"] + "b", "dx": "xyz"},  # Unknown.
      {"lesion_id": "HAM_x4", "image_id": rows[2]["image_id"] + "c", "dx": ""},  # Empty label.
  ]
  imagefiles.write_csv(csv_path, bad_rows, bom=True, pad=True)  # BOM and stray whitespace.
  bundle = _run(_ham_config(dirs, csv_path), tmp_path / "out")
  reasons = [s["reason"] for s in bundle.notes.skipped]
  assert any("ISIC_missing" in s["item"] and "no image file" in s["reason"]
             for s in bundle.notes.skipped)
  assert any("duplicated image id" in r for r in reasons)
  assert any("unknown dx label 'xyz'" in r for r in reasons)
  assert any("empty dx label" in r for r in reasons)
  assert len(reasons) == 4
  assert sum(len(s) for s in bundle.splits.values()) == len(rows)


def test_missing_required_column_is_one_clear_error(tmp_path):
  dirs, csv_path, rows = imagefiles.ham_dataset(str(tmp_path / "ham"))
  imagefiles.write_csv(csv_path, rows, columns=("lesion_id", "image_id"))
  with pytest.raises(PipelineError, match=r"missing required column\(s\) dx"):
    _run(_ham_config(dirs, csv_path), tmp_path / "out")


def test_missing_csv_and_missing_dir_are_clear_errors(tmp_path):
  with pytest.raises(PipelineError, match="metadata CSV not found"):
    _run(_ham_config(str(tmp_path), str(tmp_path / "nope.csv")), tmp_path / "out")
  with pytest.raises(PipelineError, match="image directory not found"):
    _run(_ham_config(str(tmp_path / "nodir"), str(tmp_path / "nope.csv")), tmp_path / "out")


# ---------------------------------------------------------------------------- datasets


def test_empty_dataset_is_a_clear_error_that_says_why(tmp_path):
  (tmp_path / "root" / "a").mkdir(parents=True)
  (tmp_path / "root" / "b").mkdir(parents=True)
  with pytest.raises(PipelineError, match="no usable image: 0 skipped"):
    _run(DataConfig(data_format="folders", data_dir=str(tmp_path / "root"), image_size=SIZE),
         tmp_path / "out")
  # Fake .jpg files: the reasons are counted in the one line and listed in data_report.json.
  for cls in ("a", "b"):
    for i in range(3):
      (tmp_path / "root" / cls / f"{i}.jpg").write_text("not an image")
  with pytest.raises(PipelineError, match=r"6 skipped \(6 x .*e\.g\. .*0\.jpg") as err:
    _run(DataConfig(data_format="folders", data_dir=str(tmp_path / "root"), image_size=SIZE),
         tmp_path / "out2")
  report = json.load(open(tmp_path / "out2" / "data_report.json"))
  assert len(report["skipped"]) == 6 and "data_report.json" in str(err.value)


def test_class_left_without_images_is_dropped_with_warning_or_strict_error(tmp_path):
  root = tmp_path / "root"
  for cls in ("a", "b"):
    for i in range(5):
      imagefiles.write(str(root / cls / f"{i}.png"), seed=i)
  imagefiles.write_bad(str(root / "c" / "0.jpg"), "corrupt")
  bundle = _run(DataConfig(data_format="folders", data_dir=str(root), image_size=SIZE),
                tmp_path / "out")
  assert bundle.labels == ("a", "b")
  assert any("class 'c' has no usable images" in w for w in bundle.notes.warnings)
  with pytest.raises(PipelineError):
    _run(DataConfig(data_format="folders", data_dir=str(root), image_size=SIZE, strict=True),
         tmp_path / "strict")


def test_class_too_small_to_split_is_a_clear_error(tmp_path):
  root = tmp_path / "root"
  for i in range(6):
    imagefiles.write(str(root / "big" / f"{i}.png"), seed=i)
  for i in range(2):
    imagefiles.write(str(root / "tiny" / f"{i}.png"), seed=10 + i)
  with pytest.raises(PipelineError, match="class 'tiny' has 2"):
    _run(DataConfig(data_format="folders", data_dir=str(root), image_size=SIZE), tmp_path / "o")


def test_streaming_when_cache_budget_is_exceeded(tmp_path):
  dirs, csv_path, _ = imagefiles.ham_dataset(str(tmp_path / "ham"))
  bundle = _run(_ham_config(dirs, csv_path, cache_max_gb=1e-6), tmp_path / "out")
  assert bundle.splits["train"].images is None
  assert bundle.streamed


def _folders(root, layout):
  """ROOT/SPLIT/CLASS/i.jpg for {split: {class: n}}."""
  colours = {"nv": (200, 80, 80), "mel": (80, 200, 80), "bkl": (80, 80, 200)}
  for split, classes in layout.items():
    for cls, n in classes.items():
      for i in range(n):
        imagefiles.write(str(root / split / cls / f"{i}.jpg"), colour=colours[cls], seed=i,
                         fmt="JPEG")


def test_a_class_with_no_training_image_is_refused(tmp_path):
  root = tmp_path / "d"
  _folders(root, {"train": {"nv": 8, "mel": 8}, "test": {"nv": 3, "bkl": 12}})
  with pytest.raises(PipelineError, match="class 'bkl' has no training image \\(12 in test\\)"):
    _run(DataConfig(data_format="folders", data_dir=str(root), image_size=SIZE), tmp_path / "o")


def test_a_class_missing_from_the_test_split_is_a_reported_warning(tmp_path):
  root = tmp_path / "d"
  _folders(root, {"train": {"nv": 8, "mel": 8, "bkl": 8}, "test": {"nv": 3, "bkl": 3}})
  _run(DataConfig(data_format="folders", data_dir=str(root), image_size=SIZE), tmp_path / "o")
  warnings = json.load(open(tmp_path / "o" / "data_report.json"))["warnings"]
  assert any("class 'mel' has no image in the test split" in w for w in warnings), warnings
