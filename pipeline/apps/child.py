"""What both runtime child processes share: read the command line, print every image's
categories as one JSON line, and turn a failure into one stderr line and exit 1.

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
  """`python -m pipeline.apps.X MODEL IMAGE...`: prints classify(MODEL, IMAGES) as JSON."""
  try:
    print(json.dumps(classify(sys.argv[1], sys.argv[2:])))
  except Exception as e:  # pylint: disable=broad-except
    # One line for the parent to relay; the parent turns it into a PipelineError.
    print(f"{type(e).__name__}: {e}".splitlines()[0], file=sys.stderr)
    sys.exit(1)
