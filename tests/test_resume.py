"""A build killed part-way through a phase resumes there and finishes with the same labels."""

import json
import os
import signal
import subprocess
import sys
import time

from pipeline import labels as labels_lib
from tests.conftest import REPO

FLAGS = ["--data_format=synthetic", "--set=data.synthetic_classes=3",
         "--set=data.synthetic_per_class=30",
         "--image_size=32", "--alpha=0.35", "--weights=none", "--transfer_epochs=2",
         "--finetune_epochs=6", "--finetune_layers=154", "--finetune_lr=0.0003",
         "--qat_epochs=1", "--set=train.qat.learning_rate=0.00001", "--batch_size=16",
         "--set=train.augment=false", "--set=export.calibration_images=32", "--stop_after=qat"]


def _start(out, *extra):
  return subprocess.Popen(
      [sys.executable, "-m", "pipeline.build", *FLAGS, f"--output_dir={out}",
       f"--assets_dir={out}/assets", *extra], cwd=REPO, stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT, text=True, env=dict(os.environ, PYTHONPATH=REPO))


def test_kill_mid_finetune_then_resume(tmp_path):
  out = str(tmp_path / "build")
  state = os.path.join(out, "checkpoints", "finetune", "state.json")
  proc = _start(out)
  deadline = time.time() + 300
  killed_after = 0
  while time.time() < deadline and proc.poll() is None:
    try:
      with open(state) as f:
        killed_after = json.load(f)["epochs_done"]
    except (OSError, ValueError, KeyError):
      killed_after = 0
    if killed_after >= 2:
      proc.send_signal(signal.SIGKILL)
      break
    time.sleep(0.02)
  proc.wait(timeout=60)
  assert proc.returncode == -signal.SIGKILL, proc.stdout.read()
  assert 2 <= killed_after < 6
  labels_before = labels_lib.read_labels(os.path.join(out, "labels.txt"))
  splits_before = open(os.path.join(out, "splits.csv")).read()
  assert not os.path.exists(os.path.join(out, "model_float.keras"))  # Died inside finetune.

  resumed = _start(out, "--resume")
  log, _ = resumed.communicate(timeout=600)
  assert resumed.returncode == 0, log
  line = next(l for l in log.splitlines() if "finetune: resuming after epoch" in l)
  resumed_at = int(line.split("after epoch ")[1].split("/")[0])
  assert killed_after <= resumed_at < 6
  assert "transfer epoch" not in log  # The finished phase was not repeated.
  assert labels_lib.read_labels(os.path.join(out, "labels.txt")) == labels_before
  assert open(os.path.join(out, "splits.csv")).read() == splits_before
  for name in ("model_float.keras", "checkpoints/qat_final_weights.index", "flags.txt",
               "report.json", "training_curves.png"):
    assert os.path.exists(os.path.join(out, name)), name
  report = json.load(open(os.path.join(out, "report.json")))
  finetune = report["training"]["finetune"]
  assert len(finetune["history"]["loss"]) == 6  # Epochs before and after the kill.
  assert finetune["resumed_from_epoch"] == resumed_at
  assert set(report["training"]) == {"transfer", "finetune", "qat"}


def test_rerun_from_a_stage_redoes_it_and_keeps_the_earlier_ones(tmp_path):
  out = str(tmp_path / "build")
  first = _start(out)
  log, _ = first.communicate(timeout=600)
  assert first.returncode == 0, log
  before = json.load(open(os.path.join(out, "report.json")))
  flags_before = open(os.path.join(out, "flags.txt")).read()

  # A setting that fine-tuning read cannot change without re-running fine-tuning.
  refused = _start(out, "--rerun_from=qat", "--finetune_epochs=5")
  log, _ = refused.communicate(timeout=600)
  assert refused.returncode == 1 and "Traceback" not in log, log
  assert "train.finetune.epochs differs" in log and "--rerun_from=finetune" in log
  assert open(os.path.join(out, "flags.txt")).read() == flags_before  # Nothing was touched.

  rerun = _start(out, "--rerun_from=qat", "--qat_epochs=2")
  log, _ = rerun.communicate(timeout=600)
  assert rerun.returncode == 0, log
  for stage in ("transfer", "finetune", "crt"):
    assert f"{stage}: reusing the finished stage" in log
  assert "finetune epoch" not in log and "qat epoch 1/2" in log  # QAT started over,
  assert "resuming after epoch" not in log  # not from the earlier build's checkpoint.
  after = json.load(open(os.path.join(out, "report.json")))
  assert after["training"]["finetune"] == before["training"]["finetune"]
  assert len(after["training"]["qat"]["history"]["loss"]) == 2
  assert "--qat_epochs=2" in open(os.path.join(out, "flags.txt")).read()


def test_each_setting_belongs_to_the_first_stage_that_reads_it():
  from pipeline.config import BuildConfig, readers, replace
  assert readers.first_reader("train.qat.epochs") == "qat"
  assert readers.first_reader("export.calibration_images") == "qat"  # QAT calibrates on them.
  assert readers.first_reader("export.variants") == "export"
  assert readers.first_reader("train.batch_size") == "transfer"  # Every phase reads it.
  assert readers.first_reader("no_such_setting") == "data"  # Unknown: redo everything.
  base = BuildConfig()
  changed = replace(base, train=replace(base.train, crt_c=0.1),
                    gate=replace(base.gate, max_flip_margin=0.3))
  assert sorted(readers.changed_settings(base.to_dict(), changed.to_dict())) == [
      "gate.max_flip_margin", "train.crt_c"]
  assert readers.read_before(base.to_dict(), changed.to_dict(), "crt") == []
  assert readers.read_before(base.to_dict(), changed.to_dict(), "qat") == [("train.crt_c", "crt")]


def test_rerun_from_refuses_what_it_cannot_redo(tmp_path):
  import pytest
  from pipeline.config import BuildConfig, RunOptions, replace
  from pipeline.errors import PipelineError
  from pipeline.stages.state import PROGRESS_FILE, Progress
  out = str(tmp_path)
  options = RunOptions(output_dir=out, rerun_from="crt").validate()
  assert options.resume  # --rerun_from implies --resume.
  with pytest.raises(PipelineError, match="holds no build"):
    Progress(BuildConfig(), options)
  config = BuildConfig()
  with open(os.path.join(out, PROGRESS_FILE), "w") as f:
    json.dump({"completed": ["data", "transfer", "finetune", "crt", "qat"],
               "stage_seconds": {"qat": 1.0}, "config": config.to_dict()}, f)
  # cRT already replaced the fine-tuned classifier in model_float.keras.
  nocrt = replace(config, train=replace(config.train, crt=False))
  with pytest.raises(PipelineError, match="--rerun_from=finetune"):
    Progress(nocrt, options)
  kept = Progress(replace(config, train=replace(config.train, crt_c=0.1)), options)
  assert kept.data["completed"] == ["data", "transfer", "finetune"]
  assert kept.stage_seconds == {}
  with pytest.raises(PipelineError, match="comes after --stop_after"):
    RunOptions(output_dir=out, rerun_from="assets", stop_after="qat").validate()


def test_resume_reads_an_older_version_s_build_as_it_was(tmp_path):
  """A build saved before a field existed did what the field's default does: resuming it
  after an upgrade is not a settings change; a real change, or a field this version does not
  know, still stops it in one line."""
  import pytest
  from pipeline.config import BuildConfig, RunOptions, replace
  from pipeline.errors import PipelineError
  from pipeline.stages.state import PROGRESS_FILE, Progress
  out, config = str(tmp_path), BuildConfig()

  def saved(edit):
    old = json.loads(json.dumps(config.to_dict()))
    edit(old)
    with open(os.path.join(out, PROGRESS_FILE), "w") as f:
      json.dump({"completed": ["data", "transfer"], "stage_seconds": {}, "config": old}, f)

  def older(old):  # Fields added in later versions, missing from an older build's record.
    del old["train"]["crt_c"], old["data"]["train_fraction"]

  saved(older)
  resume = RunOptions(output_dir=out, resume=True).validate()
  assert Progress(config, resume).done("transfer")
  rerun = RunOptions(output_dir=out, rerun_from="finetune").validate()
  assert Progress(replace(config, train=replace(config.train, crt_c=0.1)),
                  rerun).data["completed"] == ["data", "transfer"]
  with pytest.raises(PipelineError, match="--resume: train.crt_c was 0.01 .*, now 0.1, and its "
                     "crt stage is under way; resume with the same flags"):
    Progress(replace(config, train=replace(config.train, crt_c=0.1)), resume)
  # A field whose default changed since: a record without it ran with its first default.
  saved(lambda old: old["train"].pop("finetune_class_weight"))  # Older builds.
  with pytest.raises(PipelineError, match="train.finetune_class_weight was '' .*, now 'sqrt'"):
    Progress(config, resume)
  as_it_was = replace(config, train=replace(config.train, finetune_class_weight=""))
  assert Progress(as_it_was, resume).done("transfer")
  saved(lambda old: old["train"].update(from_the_future=1))
  with pytest.raises(PipelineError, match="unknown field.*from_the_future"):
    Progress(config, resume)


def _finished_data_stage(out, config):
  """An output directory whose build finished its data stage under `config`."""
  from pipeline import atomic
  from pipeline.stages import state as state_lib
  os.makedirs(out, exist_ok=True)
  config.save(os.path.join(out, "config.json"))
  atomic.write_json(os.path.join(out, state_lib.PROGRESS_FILE),
                    {"completed": ["data"], "stage_seconds": {"data": 1.0},
                     "config": config.to_dict()})


def test_resume_refuses_a_setting_a_finished_stage_read(tmp_path):
  import dataclasses
  import pytest
  from pipeline import config as config_lib
  from pipeline.errors import PipelineError
  from pipeline.stages import state as state_lib
  out = str(tmp_path / "b")
  config = config_lib.smoke_config()
  _finished_data_stage(out, config)
  options = config_lib.RunOptions(output_dir=out, resume=True)
  with pytest.raises(PipelineError, match="seed was 42 .* now 7, and its data stage already"):
    state_lib.Progress(dataclasses.replace(config, seed=7), options)
  # A setting only later stages read may change on --resume.
  later = dataclasses.replace(config, gate=dataclasses.replace(config.gate, mcnemar_alpha=0.05))
  state_lib.Progress(later, options)


def test_a_fresh_build_refuses_a_folder_holding_another_build(tmp_path):
  import pytest
  from pipeline import config as config_lib
  from pipeline import stages
  from pipeline.errors import PipelineError
  out = tmp_path / "b"
  _finished_data_stage(str(out), config_lib.smoke_config())
  (out / "model_int8.tflite").write_bytes(b"old")
  (out / ".worker-1").mkdir()  # A multi-worker task's scratch folder.
  with pytest.raises(PipelineError, match="holds another build; give --resume"):
    stages._claim_output_dir(config_lib.RunOptions(output_dir=str(out)))
  stages._claim_output_dir(config_lib.RunOptions(output_dir=str(out), overwrite=True))
  assert os.listdir(out) == [".worker-1"]  # The old build's files are gone.
  (tmp_path / "notes").mkdir()
  (tmp_path / "notes" / "todo.txt").write_text("mine")
  with pytest.raises(PipelineError, match="is not empty and holds no build"):
    stages._claim_output_dir(config_lib.RunOptions(output_dir=str(tmp_path / "notes"),
                                                   overwrite=True))
  with pytest.raises(PipelineError, match="cannot go with --resume"):
    config_lib.RunOptions(output_dir=str(out), overwrite=True, resume=True).validate()
