"""Multi-worker training (--strategy=multi_worker): the cluster from TF_CONFIG, where each
task writes, and a lost peer turned into one clear error instead of a hang.

Every task runs the same command. All of them train in lockstep (MultiWorkerMirroredStrategy
all-reduces the gradients, so their weights stay identical); the chief (task type "chief", or
worker 0 when the cluster has no chief) writes the build into OUTPUT_DIR and alone goes on to
export, evaluate, gate and ship. Every other task writes its data report and checkpoints to its
own scratch directory, OUTPUT_DIR/.worker-N, stops after the training stages, and removes the
scratch when it finishes.
"""

import contextlib
import dataclasses
import json
import os
import re
from typing import Iterator, Mapping

from pipeline.config import RunOptions, stage_index
from pipeline.errors import PipelineError

LAST_SHARED_STAGE = "qat"  # Every worker takes part up to here; then the chief goes on alone.


@dataclasses.dataclass(frozen=True)
class Task:
  """This process's place in the cluster."""
  kind: str     # "chief" or "worker"
  index: int
  tasks: int    # How many processes train (chief + workers).
  has_chief: bool

  @property
  def is_chief(self) -> bool:
    return self.kind == "chief" or (not self.has_chief and self.index == 0)

  @property
  def name(self) -> str:
    return f"{self.kind} {self.index}"


def task_from_env(environ: Mapping[str, str] = os.environ) -> Task:
  """This task, from TF_CONFIG.

  Raises:
    PipelineError: TF_CONFIG missing, not JSON, or not naming this task in its cluster.
  """
  text = environ.get("TF_CONFIG", "")
  if not text:
    raise PipelineError("--strategy=multi_worker needs TF_CONFIG describing the cluster; set it "
                        "on every worker (see BUILD.md, Multi-worker training), or use "
                        "--strategy=mirrored")
  try:
    tf_config = json.loads(text)
    cluster, task = tf_config["cluster"], tf_config["task"]
    kind, index = task["type"], int(task["index"])
    members = cluster[kind]
  except (ValueError, KeyError, TypeError) as e:
    raise PipelineError(f"TF_CONFIG is not a cluster description ({type(e).__name__}: {e}); "
                        'expected {"cluster": {"worker": ["host:port", ...]}, "task": '
                        '{"type": "worker", "index": N}}') from None
  if kind not in ("chief", "worker"):
    raise PipelineError(f"TF_CONFIG task type {kind!r}: this build trains with chief and "
                        "worker tasks only")
  if not 0 <= index < len(members):
    raise PipelineError(f"TF_CONFIG task index {index} is outside the cluster's {len(members)} "
                        f"{kind} address(es)")
  return Task(kind, index, len(cluster.get("chief", [])) + len(cluster.get("worker", [])),
              "chief" in cluster)


def task_options(options: RunOptions, task: Task) -> RunOptions:
  """Where and how far this task runs: the chief as asked; any other task in its own scratch
  directory, through the training stages only."""
  if task.is_chief:
    return options
  scratch = os.path.join(options.output_dir, f".{task.kind}-{task.index}")
  stop = options.stop_after
  if stage_index(stop) > stage_index(LAST_SHARED_STAGE):
    stop = LAST_SHARED_STAGE
  return dataclasses.replace(options, output_dir=scratch,
                             assets_dir=os.path.join(scratch, "android_assets"), stop_after=stop)


def make_strategy():
  """MultiWorkerMirroredStrategy over TF_CONFIG's cluster. Must come before any other
  TensorFlow op of the process (collectives are configured at start-up)."""
  from pipeline import quiet  # pylint: disable=g-import-not-at-top
  from pipeline.tf_compat import tf  # pylint: disable=g-import-not-at-top
  with quiet.native_stderr():  # gRPC server and coordination agent start-up lines.
    return tf.distribute.MultiWorkerMirroredStrategy()


def finish(strategy) -> None:
  """A barrier: returns once every task has called it (the chief after its last stage), so a
  task that is done and exits is never taken by the others for a crashed one."""
  from pipeline.tf_compat import tf  # pylint: disable=g-import-not-at-top
  strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(lambda: tf.constant(1.0)), axis=None)


_PEER = re.compile(r"/job:(\w+)/replica:\d+/task:(\d+)")


@contextlib.contextmanager
def peer_failures(task: Task) -> Iterator[None]:
  """Turns a lost peer (TensorFlow's coordination service stops hearing its heartbeats and
  aborts the collectives) into one PipelineError naming it."""
  from pipeline.tf_compat import tf  # pylint: disable=g-import-not-at-top
  try:
    yield
  except (tf.errors.UnavailableError, tf.errors.DeadlineExceededError,
          tf.errors.AbortedError, tf.errors.CancelledError) as e:
    text = str(e)
    after = text.split("unhealthy", 1)[-1] if "unhealthy" in text else text
    peers = sorted({f"{k} {i}" for k, i in _PEER.findall(after)} - {task.name})
    who = ", ".join(peers) if peers else "a peer"
    raise PipelineError(f"multi-worker training stopped on {task.name}: {who} stopped "
                        "responding; restart every task with the same flags plus --resume "
                        "(each continues from its last epoch checkpoint)") from None
