"""Distillation of the fine-tuned model's 8-view mean (pipeline.train.distill,
benchmarks.distill), on the shared smoke build."""

import dataclasses
import json
import os

import numpy as np
import pytest

from pipeline import data as data_lib
from pipeline.data import Split
from pipeline import model as model_lib
from pipeline.config import PhaseConfig
from pipeline.errors import PipelineError
from pipeline.stages.training import FLOAT_MODEL, TRANSFER_WEIGHTS
from pipeline.train import distill, fit, inputs
from pipeline.tf_compat import keras
from tests.conftest import run_cli


def _bundle(cfg, run):
  return data_lib.load(cfg.data, cfg.seed, split_file=os.path.join(run.output_dir, "splits.csv"),
                       synthetic_root=os.path.join(run.output_dir, "synthetic_data"))


def _finetuned(run):
  """The build's fine-tuned model: its last fine-tune epoch with its own classifier."""
  model = keras.models.load_model(os.path.join(run.output_dir, FLOAT_MODEL))
  fit.restore_epoch(model, run.output_dir, "finetune", "last")
  return model


def test_soft_targets_mix_the_smoothed_labels_and_the_teacher():
  teacher = np.array([[0.6, 0.3, 0.1], [0.2, 0.2, 0.6]], np.float32)
  labels = np.array([1, 2])
  smoothed = np.array([[0.05, 0.9, 0.05], [0.05, 0.05, 0.9]], np.float32)  # 0.15 / 3 = 0.05
  targets = lambda **kw: distill.soft_targets(labels, 3, 0.15, **kw)
  np.testing.assert_allclose(targets(), smoothed, atol=1e-6)
  np.testing.assert_allclose(targets(teacher=teacher, label_weight=1.0), smoothed, atol=1e-6)
  np.testing.assert_allclose(targets(teacher=teacher, label_weight=0.0), teacher, atol=1e-6)
  mixed = targets(teacher=teacher, label_weight=0.25)
  np.testing.assert_allclose(mixed, 0.25 * smoothed + 0.75 * teacher, atol=1e-6)
  np.testing.assert_allclose(mixed.sum(1), 1.0, atol=1e-6)
  with pytest.raises(ValueError, match="needs a teacher"):
    targets(label_weight=0.5)


def test_training_batches_pair_each_image_with_its_soft_target(built):
  cfg, run, _ = built
  bundle = _bundle(cfg, run)
  train, norm = bundle.splits["train"], cfg.model.normalization
  targets = np.random.default_rng(0).dirichlet(np.ones(len(bundle.labels)),
                                               len(train)).astype(np.float32)
  ds, steps = inputs.training_dataset(bundle, norm, 16, seed=3, augment=False,
                                      class_balance="none", targets=targets)
  images = norm.apply_np(train.pixels()).reshape(len(train), -1)
  seen = []
  for x, y, w in ds.take(steps):
    for image, target in zip(x.numpy().reshape(len(x), -1), y.numpy()):
      index = int(np.abs(images - image).sum(1).argmin())
      np.testing.assert_allclose(target, targets[index], atol=1e-6)
      seen.append(index)
    np.testing.assert_array_equal(w.numpy(), 1.0)
  assert sorted(seen) == list(range(len(train)))  # Every image once, shuffled.
  assert seen != sorted(seen)


def test_distill_benchmark_teaches_the_8_view_mean_to_a_born_again_student(built, tmp_path):
  cfg, run, report = built
  out, work = tmp_path / "distill.json", tmp_path / "work"
  proc = run_cli(["-m", "benchmarks.distill", f"--build_dir={run.output_dir}", "--epochs=1",
                  "--learning_rate=0.001", "--warmup_epochs=0", f"--work_dir={work}",
                  f"--output_json={out}"])
  assert proc.returncode == 0, proc.stderr
  payload = json.load(open(out))
  (build,) = payload["builds"]
  assert set(build["rows"]) == {"shipped", "student"}
  assert build["rows"]["shipped"]["test"] == pytest.approx(
      report["models"]["float32"]["balanced_accuracy"], abs=1e-9)
  assert payload["student"]["init"] == "transfer" and os.path.isfile(tmp_path / "distill.md")
  student = build["rows"]["student"]  # In the progress log too, should a later build crash.
  assert "student scored" in proc.stdout and (
      f"test {student['test']:.1%}, test TTA8 {student['test_tta8']:.1%}, "
      f"val {student['val']:.1%}; shipped" in proc.stdout)
  # The teacher is the fine-tuned model over 8 views: not its one view, not the shipped model.
  (folder,) = os.listdir(work)
  teacher = np.load(os.path.join(work, folder, distill.TEACHER_CACHE))
  pixels = _bundle(cfg, run).splits["train"].pixels()
  finetuned = _finetuned(run)
  np.testing.assert_allclose(teacher, model_lib.dihedral_tta_model(finetuned).predict(
      cfg.model.normalization.apply_np(pixels), verbose=0), atol=1e-5)
  assert np.abs(teacher - finetuned.predict(cfg.model.normalization.apply_np(pixels),
                                            verbose=0)).max() > 1e-3


@pytest.mark.parametrize("init,label_weight,weight_decay,layers,smoothing,color", [
    ("transfer", 0.5, 0.0, None, None, 0.0), ("finetuned", 1.0, 0.2, 7, 0.3, 0.4)])
def test_the_student_starts_from_the_chosen_weights(built, tmp_path, monkeypatch, init,
                                                    label_weight, weight_decay, layers,
                                                    smoothing, color):
  """The weights the student holds when its fine-tuning starts are its start's; it trains with
  the weight decay, colour jitter and backbone layers asked for (by default the build's); with
  --label_weight=1 its targets are the labels, smoothed as asked (by default as the build
  did), and no teacher is computed. The shipped
  model's scores are kept for the next run."""
  from benchmarks import distill as bench  # pylint: disable=g-import-not-at-top
  from benchmarks import readout  # pylint: disable=g-import-not-at-top
  cfg, run, _ = built
  captured = {}
  original = distill.run_distill

  def run_observed(model, phase, layers, targets, ctx, *resizing):
    captured.update(weights=[w.copy() for w in model.get_weights()], phase=phase,
                    targets=targets, layers=layers, color=ctx.color_jitter)
    return original(model, phase, layers, targets, ctx, *resizing)

  monkeypatch.setattr(distill, "run_distill", run_observed)  # Observes; the real one runs.
  result = bench.score_build(run.output_dir,
                             bench.Student(init, 1, 1e-3, 0.0, label_weight, weight_decay,
                                           finetune_layers=layers, label_smoothing=smoothing,
                                           color_jitter=color),
                             str(tmp_path), progress=lambda message: None)
  start = _finetuned(run)
  if init == "transfer":
    start.load_weights(os.path.join(run.output_dir, TRANSFER_WEIGHTS)).expect_partial()
  for got, want in zip(captured["weights"], start.get_weights()):
    np.testing.assert_array_equal(got, want)
  assert captured["phase"].weight_decay == weight_decay
  assert captured["color"] == color
  assert captured["layers"] == (cfg.train.finetune_layers if layers is None else layers)
  teacher_file = os.path.join(tmp_path, distill.TEACHER_CACHE)
  assert os.path.exists(teacher_file) == (label_weight < 1)
  if label_weight == 1:
    labels = _bundle(cfg, run).splits["train"].labels
    smoothing = cfg.train.finetune.label_smoothing if smoothing is None else smoothing
    k = captured["targets"].shape[1]
    np.testing.assert_allclose(captured["targets"],
                               np.eye(k)[labels] * (1 - smoothing) + smoothing / k, atol=1e-6)

  def not_again(model):
    raise AssertionError("the shipped model was scored again")

  assert readout.cached_scores(run.output_dir, os.path.join(tmp_path, bench.SHIPPED_SCORES),
                               not_again) == result["rows"]["shipped"]


def test_progressive_resizing_trains_the_same_weights_small_then_full_size_on_one_schedule(
    built, tmp_path, monkeypatch):
  """The low-resolution epochs train the student's own weights on resized images; the
  full-size epochs start from what they learnt and continue their optimizer (one schedule)."""
  cfg, run, _ = built
  bundle = _bundle(cfg, run)
  train = bundle.splits["train"]
  size, batch = train.image_size, cfg.train.batch_size
  ctx = fit.Context(bundle=bundle, normalization=cfg.model.normalization, batch_size=batch,
                    class_balance="none", augment=True, seed=0, work_dir=str(tmp_path),
                    resume=False, log=lambda message: None)
  targets = distill.soft_targets(train.labels, len(bundle.labels), 0.1)
  model = _finetuned(run)
  start = [w.copy() for w in model.get_weights()]
  parts = []
  original = distill.fit_phase

  def observed(name, net, phase, ctx, loss, data, steps, val_inputs, *args, **kwargs):
    x, _, _ = next(iter(data))
    parts.append((name, net.input_shape[1], x.shape[1], phase.epochs,
                  [w.copy() for w in model.get_weights()]))
    return original(name, net, phase, ctx, loss, data, steps, val_inputs, *args, **kwargs)

  monkeypatch.setattr(distill, "fit_phase", observed)  # Observes; the real one runs.
  results = distill.run_distill(model, PhaseConfig(epochs=1, learning_rate=1e-3), 20, targets,
                                ctx, low_res_epochs=2, low_res_size=size // 2)
  low, full = parts
  assert low[:4] == ("distill_low_res", size // 2, size // 2, 2)
  assert full[:4] == ("distill", size, size, 1)
  assert [r.name for r in results] == ["distill_low_res", "distill"]
  # The low-resolution epochs trained the model's own weights: the full-size ones start there.
  assert all(np.array_equal(a, b) for a, b in zip(low[4], start))
  assert max(np.abs(a - b).max() for a, b in zip(full[4], start)) > 1e-6
  steps = -(-len(train) // batch)
  assert int(model.optimizer.iterations) == 3 * steps  # One optimizer over all 3 epochs.


def test_class_weights_balanced_and_square_root_inverse_frequency():
  counts = np.array([400, 100, 25, 0])
  assert inputs.class_weights(counts, "balanced") == pytest.approx(
      {0: 525 / (4 * 400), 1: 525 / (4 * 100), 2: 525 / (4 * 25), 3: 0.0})
  root = inputs.class_weights(counts, "sqrt")
  assert root[1] / root[0] == pytest.approx(2.0) and root[2] / root[1] == pytest.approx(2.0)
  assert sum(counts[c] * w for c, w in root.items()) == pytest.approx(counts.sum())  # Mean 1.
  assert root[3] == 0.0 and inputs.class_weights(counts, "none") is None


def _imbalanced(bundle):
  """The bundle with all of class 0's training images and a third of the others'."""
  train = bundle.splits["train"]
  keep = np.flatnonzero((train.labels == 0) | (np.arange(len(train)) % 3 == 0))
  take = lambda items: [items[i] for i in keep]
  sub = Split(take(train.keys), take(train.paths), train.labels[keep], take(train.groups),
              None if train.images is None else train.images[keep], train.image_size)
  return dataclasses.replace(bundle, splits={**bundle.splits, "train": sub})


def test_deferred_reweighting_weights_only_the_last_epochs_on_one_schedule(
    built, tmp_path, monkeypatch):
  """--reweight=sqrt --reweight_epochs=1 of 3: two epochs as the build weighs classes (here
  not at all), then one with each image's loss weighted by its class, one optimizer."""
  cfg, run, _ = built
  bundle = _imbalanced(_bundle(cfg, run))
  train, batch = bundle.splits["train"], cfg.train.batch_size
  counts = bundle.train_counts()
  assert len(set(counts.tolist())) > 1
  ctx = fit.Context(bundle=bundle, normalization=cfg.model.normalization, batch_size=batch,
                    class_balance="none", augment=False, seed=0, work_dir=str(tmp_path),
                    resume=False, log=lambda message: None)
  targets = distill.soft_targets(train.labels, len(bundle.labels), 0.0)
  model, parts, original = _finetuned(run), [], distill.fit_phase

  def observed(name, net, phase, ctx, loss, data, steps, *args, **kwargs):
    _, y, w = next(iter(data))
    parts.append((name, phase.epochs, y.numpy().argmax(1), w.numpy()))
    return original(name, net, phase, ctx, loss, data, steps, *args, **kwargs)

  monkeypatch.setattr(distill, "fit_phase", observed)  # Observes; the real one runs.
  results = distill.run_distill(model, PhaseConfig(epochs=3, learning_rate=1e-3), 20, targets,
                                ctx, reweight="sqrt", reweight_epochs=1)
  plain, late = parts
  assert plain[:2] == ("distill", 2) and late[:2] == ("distill_reweighted", 1)
  assert [r.name for r in results] == ["distill", "distill_reweighted"]
  np.testing.assert_array_equal(plain[3], 1.0)
  root = inputs.class_weights(counts, "sqrt")
  np.testing.assert_allclose(late[3], [root[c] for c in late[2]], rtol=1e-6)
  assert len(set(late[3].tolist())) > 1  # The batch holds classes of different weights.
  assert int(model.optimizer.iterations) == 3 * -(-len(train) // batch)


def test_the_soup_averages_the_students_and_the_builds_fine_tuned_weights_then_refits(
    built, tmp_path, monkeypatch):
  """--soup scores one more model: the element-wise mean of the student's weights after its
  fine-tune (drawn at the build's seed + --seed_offset) and the build's last fine-tune epoch,
  with its classifier re-fit by cRT as the build did."""
  from benchmarks import distill as bench  # pylint: disable=g-import-not-at-top
  from benchmarks import readout  # pylint: disable=g-import-not-at-top
  from pipeline.train import crt  # pylint: disable=g-import-not-at-top
  cfg, run, _ = built
  captured = {}
  original = distill.run_distill

  def run_observed(model, phase, layers, targets, ctx, *resizing):
    results = original(model, phase, layers, targets, ctx, *resizing)
    captured.update(weights=[w.copy() for w in model.get_weights()], ctx=ctx)
    return results

  monkeypatch.setattr(distill, "run_distill", run_observed)  # Observes; the real one runs.
  lines = []
  result = bench.score_build(run.output_dir,
                             bench.Student("transfer", 1, 1e-3, 0.0, 1.0, seed_offset=3,
                                           soup=True),
                             str(tmp_path), progress=lines.append)
  assert set(result["rows"]) == {"shipped", "student", "soup"}
  assert captured["ctx"].seed == cfg.seed + 3
  expected = _finetuned(run)
  expected.set_weights([(a + b) / 2 for a, b in zip(expected.get_weights(),
                                                     captured["weights"])])
  if cfg.train.crt:
    crt.run_crt(expected, cfg.train.crt_c, captured["ctx"])
  bundle = _bundle(cfg, run)
  split = {name: bundle.splits[name] for name in ("train", "val", "test")}
  feats = {name: readout.features(expected, split[name].pixels(), cfg.model.normalization,
                                  views) for name, views in (("val", 1), ("test", 8))}
  want = readout.score_readout(readout.head_classifier(expected), feats, split)
  for figure, value in want.items():
    assert result["rows"]["soup"][figure] == pytest.approx(value, abs=1e-9), figure
  assert result["rows"]["soup"] != result["rows"]["student"]
  assert f"; soup test {result['rows']['soup']['test']:.1%}" in " ".join(lines)


def test_resume_scores_the_finished_student_again_and_refuses_another_recipe(built, tmp_path):
  """--resume continues the student checkpointed in the work dir (here finished: no epoch
  trains again and it scores the same); a student of another recipe is refused in one line."""
  from benchmarks import distill as bench  # pylint: disable=g-import-not-at-top
  _, run, _ = built
  student = bench.Student("transfer", 1, 1e-3, 0.0, 1.0, seed_offset=1)
  first = bench.score_build(run.output_dir, student, str(tmp_path), progress=lambda m: None)
  lines = []
  again = bench.score_build(run.output_dir, dataclasses.replace(student, soup=True),
                            str(tmp_path), progress=lines.append, resume=True)
  assert any("distill: resuming after epoch 1/1" in line for line in lines), lines
  assert not any("distill epoch" in line for line in lines), lines
  assert again["rows"]["student"] == first["rows"]["student"]
  assert "soup" in again["rows"]
  with pytest.raises(PipelineError, match=r"--resume: .* another seed_offset; give the flags"):
    bench.score_build(run.output_dir, dataclasses.replace(student, seed_offset=2),
                      str(tmp_path), progress=lambda m: None, resume=True)

