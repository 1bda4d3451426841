"""Starts an app runtime's ImageClassifier in its own subprocess and reads back its answers."""

import dataclasses
import json
import os
import subprocess
import sys
from typing import Any, Callable, List, Optional, Sequence, Tuple, Union

import numpy as np

from pipeline.errors import PipelineError

# Image files, or the path of one .npy of uint8 pixels [N, H, W, 3] (save_pixels).
Images = Union[Sequence[str], str]

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MEDIAPIPE_PYTHON_ENV = "PIPELINE_MEDIAPIPE_PYTHON"  # Overrides .venv-mediapipe/bin/python.


class RuntimeMissing(PipelineError):
  """The runtime's environment is not installed; the check is skipped, the build goes on."""


@dataclasses.dataclass(frozen=True)
class Runtime:
  """An app runtime's child process: which module, under which interpreter."""
  key: str       # In report.json.
  name: str      # In messages.
  module: str    # The child module.
  env: dict      # Extra environment for the child.
  # Where the child's interpreter lives when it is not this process's own: an environment
  # variable that overrides it, then a virtual environment in the repository, and how to make it.
  python_env_var: Optional[str] = None
  venv: Optional[str] = None
  make_target: Optional[str] = None

  def python(self) -> str:
    """The interpreter to run the child with.

    Raises:
      RuntimeMissing: the runtime's own environment has not been created.
    """
    if not self.venv:
      return sys.executable
    path = os.environ.get(self.python_env_var or "") or os.path.join(
        REPO, self.venv, "bin", "python")
    if not os.access(path, os.X_OK):
      raise RuntimeMissing(f"{self.name} check skipped: no environment at {path} (create it "
                           f"with `make {self.make_target}`, or point {self.python_env_var} "
                           f"at a Python that has {self.name})")
    return path


TASK_LIBRARY = Runtime(
    "task_library", "TFLite Task Library", "pipeline.apps.task_library",
    # tflite-support 0.4.4's generated protos predate protobuf 4's upb backend; the
    # pure-Python backend loads them (the main process keeps upb for speed).
    {"PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION": "python"})
# MediaPipe needs absl-py 2, tfmot pins absl-py 1.x: its own environment on the same Python.
MEDIAPIPE_TASKS = Runtime("mediapipe_tasks", "MediaPipe Tasks", "pipeline.apps.mediapipe_tasks",
                          {}, python_env_var=MEDIAPIPE_PYTHON_ENV, venv=".venv-mediapipe",
                          make_target="venv-mediapipe")
ALL = (TASK_LIBRARY, MEDIAPIPE_TASKS)


def classify(runtime: Runtime, model_path: str, images: Images,
             timeout_s: float = 600) -> List[List[dict]]:
  """`runtime`'s ImageClassifier on each image (classify_models with one model)."""
  return classify_models(runtime, [model_path], images, timeout_s)[0]


def classify_models(runtime: Runtime, model_paths: Sequence[str], images: Images,
                    timeout_s: float = 600) -> List[List[List[dict]]]:
  """Runs `runtime`'s ImageClassifier on each image with each model, in one subprocess.

  Args:
    runtime: TASK_LIBRARY or MEDIAPIPE_TASKS.
    model_paths: .tflite files with metadata.
    images: image files (RGB, any size: the runtime resizes them itself, as from a photo
      file), or the path of one .npy of uint8 pixels [N, H, W, 3] (`save_pixels`: each
      image handed over decoded, as from an app's bitmap).
    timeout_s: upper bound for the subprocess, per model.

  Returns:
    Per model, per image, every class as {"index", "label", "display_name", "score"}, best
    first.

  Raises:
    RuntimeMissing: the runtime's environment is not installed.
    PipelineError: the runtime could not load or run a model.
  """
  env = dict(os.environ, **runtime.env, PYTHONPATH=os.pathsep.join(
      p for p in (REPO, os.environ.get("PYTHONPATH", "")) if p))
  source = {"pixels": images} if isinstance(images, str) else {"images": list(images)}
  request = json.dumps({"models": list(model_paths), **source}) + "\n"
  where = ", ".join(model_paths)
  try:
    proc = subprocess.run([runtime.python(), "-m", runtime.module], input=request,
                          capture_output=True, text=True, timeout=timeout_s * len(model_paths),
                          env=env, check=False)
  except subprocess.TimeoutExpired:
    raise PipelineError(f"{where}: {runtime.name} did not finish within "
                        f"{timeout_s * len(model_paths):.0f} s") from None
  if proc.returncode != 0:
    last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    raise PipelineError(f"{where}: {runtime.name} could not run the model: {last}")
  return json.loads(proc.stdout.strip().splitlines()[-1])


# Each runtime's images are dealt to this many child processes: a single child per runtime
# left the slower runtime (Task Library: about 1.8x MediaPipe's CPU time per image) running
# alone on one core at the end while the other sat idle.
SHARDS = os.cpu_count() or 1


def save_pixels(pixels: np.ndarray, path: str) -> str:
  """Saves uint8 images [N, H, W, 3] as an .npy for `classify_models`; returns `path`."""
  np.save(path, np.ascontiguousarray(pixels, np.uint8))
  return path


def classify_everywhere(model_paths: Sequence[str], pixels: np.ndarray, folder: str,
                        meanwhile: Callable[[], Any] = lambda: None,
                        shards: int = SHARDS) -> Tuple[dict, Any]:
  """classify_models in every runtime at once on `pixels` (uint8 [N, H, W, 3]), each
  runtime's images split over `shards` child processes, all side by side, while this thread
  runs `meanwhile`.

  Args:
    model_paths: .tflite files with metadata.
    pixels: the images, at the models' input size.
    folder: where to write the children's pixel files.
    meanwhile: runs in this thread while the children run.
    shards: child processes per runtime.

  Returns:
    ({runtime key: its answers per model and image, as classify_models gives them, or the
    RuntimeMissing that skipped it}, what `meanwhile` returned).

  Raises:
    PipelineError: an installed runtime could not load or run a model.
  """
  import concurrent.futures  # pylint: disable=g-import-not-at-top
  bounds = np.linspace(0, len(pixels), max(1, min(shards, len(pixels))) + 1).astype(int)
  files = [save_pixels(pixels[a:b], os.path.join(folder, f"pixels_{i}.npy"))
           for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:]))]
  with concurrent.futures.ThreadPoolExecutor(len(ALL) * len(files)) as pool:
    futures = {r.key: [pool.submit(classify_models, r, model_paths, f) for f in files]
               for r in ALL}
    done_meanwhile = meanwhile()
    out = {}
    for key, parts in futures.items():
      try:
        answers = [part.result() for part in parts]
      except RuntimeMissing as e:
        out[key] = e
        continue
      out[key] = [[a for part in answers for a in part[m]] for m in range(len(model_paths))]
  return out, done_meanwhile
