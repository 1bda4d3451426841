"""What both runtime child processes share: read the models and images as one JSON line on
stdin, print every model's categories for every image as one JSON line, and turn a failure
into one stderr line and exit 1. One process serves every model: the runtime loads once.

The images are files (as an app reads a photo) or, for a whole split, one uint8 array
[N, H, W, 3] saved with numpy (as an app hands over a decoded bitmap): nothing to encode first
and nothing to decode once per model. Standard library and numpy only: it runs in
`.venv-mediapipe` too.
"""

import json
import sys
from typing import Callable, Iterable, List, Sequence, Union

Image = Union[str, "numpy.ndarray"]  # A file path, or RGB pixels [H, W, 3] uint8.


def categories(result_categories: Iterable) -> List[dict]:
  """A runtime's categories (index, category_name, display_name, score), best first."""
  return [{"index": c.index, "label": c.category_name, "display_name": c.display_name,
           "score": c.score} for c in result_categories]


def images(request: dict) -> Sequence[Image]:
  """The request's images: its "images" (file paths), or each image of its "pixels" (an .npy
  of uint8 [N, H, W, 3])."""
  if "pixels" not in request:
    return request["images"]
  import numpy as np  # pylint: disable=g-import-not-at-top
  return np.load(request["pixels"])


def main(classify: Callable[[str, Sequence[Image]], List[List[dict]]]) -> None:
  """`python -m pipeline.apps.X < {"models": [...], "images": [...] or "pixels": ".npy"}`:
  prints [classify(model, images) for each model] as JSON."""
  try:
    request = json.loads(sys.stdin.readline())
    inputs = images(request)
    print(json.dumps([classify(model, inputs) for model in request["models"]]))
  except Exception as e:  # pylint: disable=broad-except
    # One line for the parent to relay; the parent turns it into a PipelineError.
    print(f"{type(e).__name__}: {e}".splitlines()[0], file=sys.stderr)
    sys.exit(1)
