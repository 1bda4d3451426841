"""Child process: MediaPipe Tasks' ImageClassifier classifies images, as an Android or iOS
app's `ImageClassifier.createFromOptions` would. Started by `runtimes.classify` with the
Python of `.venv-mediapipe` (requirements-mediapipe.txt), which has MediaPipe and not this
project's stack.
"""

import json
import sys
from typing import Sequence


def main(argv: Sequence[str]) -> None:
  import mediapipe as mp  # pylint: disable=g-import-not-at-top
  from mediapipe.tasks import python as mp_tasks  # pylint: disable=g-import-not-at-top
  from mediapipe.tasks.python import vision  # pylint: disable=g-import-not-at-top
  model_path, image_paths = argv[0], argv[1:]
  options = vision.ImageClassifierOptions(
      base_options=mp_tasks.BaseOptions(model_asset_path=model_path), max_results=-1)
  results = []
  with vision.ImageClassifier.create_from_options(options) as classifier:
    for path in image_paths:
      categories = classifier.classify(mp.Image.create_from_file(path)
                                       ).classifications[0].categories
      results.append([{"index": c.index, "label": c.category_name,
                       "display_name": c.display_name, "score": c.score} for c in categories])
  print(json.dumps(results))


if __name__ == "__main__":
  try:
    main(sys.argv[1:])
  except Exception as e:  # pylint: disable=broad-except
    print(f"{type(e).__name__}: {e}".splitlines()[0], file=sys.stderr)
    sys.exit(1)
