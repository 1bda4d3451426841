"""Child process: MediaPipe Tasks' ImageClassifier classifies images, as an Android or iOS
app's `ImageClassifier.createFromOptions` would. Started by `runtimes.classify` with the
Python of `.venv-mediapipe` (requirements-mediapipe.txt), which has MediaPipe and not this
project's stack.
"""

from typing import List, Sequence

from pipeline.apps import child


def classify(model_path: str, image_paths: Sequence[str]) -> List[List[dict]]:
  import mediapipe as mp  # pylint: disable=g-import-not-at-top
  from mediapipe.tasks import python as mp_tasks  # pylint: disable=g-import-not-at-top
  from mediapipe.tasks.python import vision  # pylint: disable=g-import-not-at-top
  options = vision.ImageClassifierOptions(
      base_options=mp_tasks.BaseOptions(model_asset_path=model_path), max_results=-1)
  with vision.ImageClassifier.create_from_options(options) as classifier:
    return [child.categories(classifier.classify(mp.Image.create_from_file(path))
                             .classifications[0].categories) for path in image_paths]


if __name__ == "__main__":
  child.main(classify)
