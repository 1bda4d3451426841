"""benchmarks.ensemble: the probability mean of a build's shipped model and the students that
benchmarks.distill trained on it, on the shared smoke build."""

import itertools

import numpy as np
import pytest

from benchmarks import common, distill, ensemble, readout
from pipeline import metrics
from pipeline.errors import PipelineError
from tests.conftest import run_cli


def test_ensemble_scores_each_member_and_the_mean_of_every_group(built, tmp_path, monkeypatch):
  _, run, report = built
  work = str(tmp_path / "work")
  student = distill.Student("transfer", 1, 1e-3, 0.0, 1.0, seed_offset=1)
  trained = distill.score_build(run.output_dir, student, common.work_folder(work, run.output_dir),
                                progress=lambda message: None)
  captured = {}
  original = ensemble.member_probabilities

  def observed(*args, **kwargs):
    captured["probs"], captured["split"] = original(*args, **kwargs)
    return captured["probs"], captured["split"]

  monkeypatch.setattr(ensemble, "member_probabilities", observed)  # The real one runs.
  # The same student under two names: their mean is that student.
  sources = ensemble.members({"a": work, "b": work}, ["last"])
  assert sources == {"shipped": None, "finetune last": (None, "last"), "a": (work, "last"),
                     "b": (work, "last")}
  build = ensemble.score_build(run.output_dir, sources, progress=lambda message: None)
  rows, probs, split = build["rows"], captured["probs"], captured["split"]
  assert list(rows)[:7] == ["shipped", "finetune last", "a", "b", "shipped + finetune last",
                            "shipped + a", "shipped + b"]
  assert len(rows) == 15 and list(rows)[-1] == "shipped + finetune last + a + b"
  assert rows["shipped"]["test"] == pytest.approx(
      report["models"]["float32"]["balanced_accuracy"], abs=1e-9)
  # The build kept its last epoch and re-fit its classifier by cRT: the snapshot is shipped.
  assert rows["finetune last"] == pytest.approx(rows["shipped"], abs=1e-9)
  for figure in ("val", "test", "test_tta8"):  # distill's student, re-fit by cRT as there.
    assert rows["a"][figure] == pytest.approx(trained["rows"]["student"][figure], abs=1e-9)
  assert rows["a + b"] == rows["a"]
  assert np.abs(probs["shipped"]["test"] - probs["a"]["test"]).max() > 1e-3
  for size in (2, 3):
    for group in itertools.combinations(["shipped", "a", "b"], size):
      mean = np.mean([probs[m]["test"] for m in group], axis=0)  # [8 views, N, K]
      key = " + ".join(group)
      assert build["members"][key] == list(group)
      labels = split["test"].labels
      assert rows[key]["test"] == metrics.argmax_balanced_accuracy(labels, mean[0])
      assert rows[key]["test_tta8"] == metrics.argmax_balanced_accuracy(labels, mean.mean(0))
  ensemble.check_students({"a": work}, [run.output_dir])  # distill trained it: no error.
  (gain,) = readout.member_gains([build], "shipped + a", build["members"]["shipped + a"], "test")
  assert gain == pytest.approx(100 * (rows["shipped + a"]["test"]
                                      - (rows["shipped"]["test"] + rows["a"]["test"]) / 2))


def test_bad_student_flags_are_one_line(tmp_path):
  for spec, match in (("seed2", "expected NAME=WORK_DIR"), (f"shipped={tmp_path}", "is taken"),
                      (f"a={tmp_path / 'none'}", "is not a folder")):
    with pytest.raises(PipelineError, match=match):
      ensemble.parse_students([spec])
  with pytest.raises(PipelineError, match=f"no student of --build_dir=b1 .*--work_dir={tmp_path}"):
    ensemble.check_students({"a": str(tmp_path)}, ["b1"])
  proc = run_cli(["-m", "benchmarks.ensemble", f"--build_dir={tmp_path}", "--student=x",
                  f"--output_json={tmp_path / 'e.json'}"])
  assert proc.returncode == 1 and "Traceback" not in proc.stderr
  assert proc.stderr.strip().splitlines() == [
      "benchmarks.ensemble: error: --student=x: expected NAME=WORK_DIR (a benchmarks.distill "
      "--work_dir), e.g. --student=seed2=runs/distill_work"]
