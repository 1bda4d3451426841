"""--strategy=multi_worker with real processes: two workers on 127.0.0.1 train the demo recipe
in lockstep; only the chief writes the build; a killed worker fails the run in one line."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

from tests.conftest import REPO

FLAGS = ["--flagfile=configs/demo.flags", "--set=data.synthetic_per_class=30", "--image_size=32",
         "--transfer_epochs=1", "--strategy=multi_worker", "--stop_after=finetune"]


def _free_ports(n):
  socks = [socket.socket() for _ in range(n)]
  for s in socks:
    s.bind(("127.0.0.1", 0))
  ports = [s.getsockname()[1] for s in socks]
  for s in socks:
    s.close()
  return ports


def _start_cluster(tmp_path, extra):
  cluster = {"worker": [f"127.0.0.1:{p}" for p in _free_ports(2)]}
  procs = []
  for index in range(2):
    env = dict(os.environ, PYTHONPATH=REPO, TF_CONFIG=json.dumps(
        {"cluster": cluster, "task": {"type": "worker", "index": index}}))
    log = open(tmp_path / f"worker{index}.log", "w")
    procs.append(subprocess.Popen(
        [sys.executable, "-m", "pipeline.build", *FLAGS, *extra,
         f"--output_dir={tmp_path / 'out'}"], cwd=REPO, env=env, stdout=log,
        stderr=subprocess.PIPE, text=True))
  return procs


def _epoch_lines(path, phase):
  """'finetune epoch 2/2: loss ... val_balanced_acc ...' without time stamps and durations."""
  lines = [l.split("] ", 1)[-1] for l in open(path) if f"{phase} epoch " in l]
  return [l.split("] ", 1)[-1].split("  (")[0] for l in lines]


def test_two_workers_train_in_lockstep_and_only_the_chief_writes(tmp_path):
  procs = _start_cluster(tmp_path, ["--finetune_epochs=2"])
  errors = [p.communicate(timeout=600)[1] for p in procs]
  assert [p.returncode for p in procs] == [0, 0], "\n".join(e[-3000:] for e in errors)
  assert not any("Traceback" in e for e in errors)
  out = tmp_path / "out"
  report = json.loads((out / "report.json").read_text())
  assert report["cluster"] == {"task": "worker 0", "tasks": 2, "replicas": 2}
  assert (out / "model_float.keras").is_file()
  assert any(n.startswith("ckpt") for n in os.listdir(out / "checkpoints" / "finetune"))
  # Worker 1 wrote only into its own scratch directory, and removed it when done.
  worker_log = (tmp_path / "worker1.log").read_text()
  assert f"this task's files go to {out / '.worker-1'}" in worker_log
  assert not (out / ".worker-1").exists()
  assert "done: training finished with the chief" in worker_log
  # Synchronous training: both saw the same aggregated losses, epoch by epoch.
  chief = _epoch_lines(tmp_path / "worker0.log", "finetune")
  assert len(chief) == 2 and chief == _epoch_lines(tmp_path / "worker1.log", "finetune")


def test_a_killed_worker_fails_the_run_in_one_line(tmp_path):
  procs = _start_cluster(tmp_path, ["--finetune_epochs=500"])
  deadline = time.time() + 600
  while time.time() < deadline and procs[0].poll() is None:
    if _epoch_lines(tmp_path / "worker0.log", "finetune"):
      break
    time.sleep(0.5)
  assert _epoch_lines(tmp_path / "worker0.log", "finetune"), procs[0].poll()
  procs[1].send_signal(signal.SIGKILL)
  procs[1].wait()
  try:
    _, err = procs[0].communicate(timeout=300)  # A hang fails here.
  finally:
    procs[0].kill()
  assert procs[0].returncode not in (0, None) and "Traceback" not in err, err[-3000:]
  assert err.strip().splitlines()[-1].startswith(
      "pipeline.build: error: multi-worker training stopped on worker 0: worker 1 stopped "
      "responding"), err[-3000:]


def test_tf_config_names_the_chief_and_bad_ones_are_one_clear_error():
  import pytest
  from pipeline.config import RunOptions
  from pipeline.errors import PipelineError
  from pipeline.train import cluster

  def task(cfg):
    return cluster.task_from_env({"TF_CONFIG": json.dumps(cfg)})

  two = {"worker": ["a:1", "b:2"]}
  assert task({"cluster": two, "task": {"type": "worker", "index": 0}}).is_chief
  worker = task({"cluster": two, "task": {"type": "worker", "index": 1}})
  assert not worker.is_chief and worker.tasks == 2
  with_chief = {"chief": ["c:0"], "worker": ["a:1"]}
  assert not task({"cluster": with_chief, "task": {"type": "worker", "index": 0}}).is_chief
  assert task({"cluster": with_chief, "task": {"type": "chief", "index": 0}}).tasks == 2
  # The worker trains in its own scratch directory and stops with the training stages.
  opts = cluster.task_options(RunOptions(output_dir="/o").validate(), worker)
  assert (opts.output_dir, opts.stop_after) == ("/o/.worker-1", "qat")
  for env, needle in [({}, "needs TF_CONFIG"), ({"TF_CONFIG": "{oops"}, "not a cluster"),
                      ({"TF_CONFIG": json.dumps({"cluster": two})}, "not a cluster"),
                      ({"TF_CONFIG": json.dumps({"cluster": two, "task": {
                          "type": "worker", "index": 2}})}, "index 2 is outside"),
                      ({"TF_CONFIG": json.dumps({"cluster": {"ps": ["a:1"]}, "task": {
                          "type": "ps", "index": 0}})}, "chief and worker tasks only")]:
    with pytest.raises(PipelineError, match=needle):
      cluster.task_from_env(env)
