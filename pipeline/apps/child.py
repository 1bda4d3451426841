"""What both runtime child processes share: read the models and images as one JSON line on
stdin, print every model's categories for every image as one JSON line, and turn a failure
into one stderr line and exit 1. One process serves every model: the runtime loads once.

Standard library only: it runs in `.venv-mediapipe` too.
"""

import json
import sys
from typing import Callable, Iterable, List, Sequence


def categories(result_categories: Iterable) -> List[dict]:
  """A runtime's categories (index, category_name, display_name, score), best first."""
  return [{"index": c.index, "label": c.category_name, "display_name": c.display_name,
           "score": c.score} for c in result_categories]


def main(classify: Callable[[str, Sequence[str]], List[List[dict]]]) -> None:
  """`python -m pipeline.apps.X < {"models": [...], "images": [...]}`: prints
  [classify(model, images) for each model] as JSON."""
  try:
    request = json.loads(sys.stdin.readline())
    print(json.dumps([classify(model, request["images"]) for model in request["models"]]))
  except Exception as e:  # pylint: disable=broad-except
    # One line for the parent to relay; the parent turns it into a PipelineError.
    print(f"{type(e).__name__}: {e}".splitlines()[0], file=sys.stderr)
    sys.exit(1)
