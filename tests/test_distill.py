"""Distillation of the fine-tuned model's 8-view mean (pipeline.train.distill,
benchmarks.distill), on the shared smoke build."""

import json
import os

import numpy as np
import pytest

from pipeline import data as data_lib
from pipeline import model as model_lib
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
  np.testing.assert_allclose(distill.soft_targets(labels, teacher, 1.0, 0.15), smoothed, atol=1e-6)
  np.testing.assert_allclose(distill.soft_targets(labels, teacher, 0.0, 0.15), teacher, atol=1e-6)
  mixed = distill.soft_targets(labels, teacher, 0.25, 0.15)
  np.testing.assert_allclose(mixed, 0.25 * smoothed + 0.75 * teacher, atol=1e-6)
  np.testing.assert_allclose(mixed.sum(1), 1.0, atol=1e-6)


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
  # The teacher is the fine-tuned model over 8 views: not its one view, not the shipped model.
  (folder,) = os.listdir(work)
  teacher = np.load(os.path.join(work, folder, distill.TEACHER_CACHE))
  pixels = _bundle(cfg, run).splits["train"].pixels()
  finetuned = _finetuned(run)
  np.testing.assert_allclose(teacher, model_lib.dihedral_tta_model(finetuned).predict(
      cfg.model.normalization.apply_np(pixels), verbose=0), atol=1e-5)
  assert np.abs(teacher - finetuned.predict(cfg.model.normalization.apply_np(pixels),
                                            verbose=0)).max() > 1e-3


@pytest.mark.parametrize("init", ["transfer", "finetuned"])
def test_the_student_starts_from_the_chosen_weights(built, tmp_path, monkeypatch, init):
  """The weights the student holds when its fine-tuning starts are its start's."""
  from benchmarks import distill as bench  # pylint: disable=g-import-not-at-top
  cfg, run, _ = built
  captured = {}
  original = distill.run_distill

  def run_observed(model, phase, layers, targets, ctx):
    captured["weights"] = [w.copy() for w in model.get_weights()]
    return original(model, phase, layers, targets, ctx)

  monkeypatch.setattr(distill, "run_distill", run_observed)  # Observes; the real one runs.
  bench.score_build(run.output_dir, bench.Student(init, 1, 1e-3, 0.0, 0.5), str(tmp_path),
                    progress=lambda message: None)
  start = _finetuned(run)
  if init == "transfer":
    start.load_weights(os.path.join(run.output_dir, TRANSFER_WEIGHTS)).expect_partial()
  for got, want in zip(captured["weights"], start.get_weights()):
    np.testing.assert_array_equal(got, want)
