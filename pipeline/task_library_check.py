"""Classifies images with TFLite Task Library's ImageClassifier, the way an app would.

Task Library cannot be imported in a process that has TensorFlow loaded (its pybind
types clash), so `classify` runs this module in a subprocess where TensorFlow is blocked.
"""

import json
import os
import subprocess
import sys
from typing import List, Sequence

from pipeline.errors import PipelineError


def classify(model_path: str, image_paths: Sequence[str], timeout_s: float = 300) -> List[dict]:
  """Runs Task Library's ImageClassifier on each image in a TensorFlow-free subprocess.

  Args:
    model_path: a .tflite with metadata.
    image_paths: RGB images (any size; Task Library resizes them itself).
    timeout_s: upper bound for the subprocess.

  Returns:
    Per image: {"index": top-1 class index, "label": category name, "display_name": ...,
    "score": top-1 score}.

  Raises:
    PipelineError: Task Library failed to load or run the model.
  """
  cmd = [sys.executable, "-m", "pipeline.task_library_check", model_path, *image_paths]
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env = dict(os.environ, PYTHONPATH=os.pathsep.join(
      p for p in (root, os.environ.get("PYTHONPATH", "")) if p),
             # tflite-support 0.4.4's generated protos predate protobuf 4's upb backend;
             # the pure-Python backend loads them (the main process keeps upb for speed).
             PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION="python")
  proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env=env,
                        check=False)
  if proc.returncode != 0:
    last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    raise PipelineError(f"{model_path}: TFLite Task Library could not run the model: {last}")
  return json.loads(proc.stdout.strip().splitlines()[-1])


def _main(argv: Sequence[str]) -> None:
  sys.modules["tensorflow"] = None  # Task Library must not see TensorFlow: it would clash.
  from pipeline import native  # pylint: disable=g-import-not-at-top
  native.load_libusb()
  from tflite_support.task import core, processor, vision  # pylint: disable=g-import-not-at-top
  model_path, image_paths = argv[0], argv[1:]
  options = vision.ImageClassifierOptions(
      base_options=core.BaseOptions(file_name=model_path),
      classification_options=processor.ClassificationOptions(max_results=1))
  classifier = vision.ImageClassifier.create_from_options(options)
  results = []
  for path in image_paths:
    image = vision.TensorImage.create_from_file(path)
    category = classifier.classify(image).classifications[0].categories[0]
    results.append({"index": category.index, "label": category.category_name,
                    "display_name": category.display_name, "score": category.score})
  print(json.dumps(results))


if __name__ == "__main__":
  try:
    _main(sys.argv[1:])
  except Exception as e:  # pylint: disable=broad-except
    # One line for the parent to relay; the parent turns it into a PipelineError.
    print(f"{type(e).__name__}: {e}".splitlines()[0], file=sys.stderr)
    sys.exit(1)
