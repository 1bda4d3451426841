"""Child process: MediaPipe Tasks' ImageClassifier classifies images, as an Android or iOS
app's `ImageClassifier.createFromOptions` would. Started by `runtimes.classify` with the
Python of `.venv-mediapipe` (requirements-mediapipe.txt), which has MediaPipe and not this
project's stack.
"""

from typing import List, Sequence

from pipeline.apps import child


def classify(model_path: str, images: Sequence[child.Image]) -> List[List[dict]]:
  import mediapipe as mp  # pylint: disable=g-import-not-at-top
  from mediapipe.tasks import python as mp_tasks  # pylint: disable=g-import-not-at-top
  from mediapipe.tasks.python import vision  # pylint: disable=g-import-not-at-top
  options = vision.ImageClassifierOptions(
      base_options=mp_tasks.BaseOptions(model_asset_path=model_path), max_results=-1)

  def mp_image(image: child.Image):
    if isinstance(image, str):
      return mp.Image.create_from_file(image)
    return mp.Image(image_format=mp.ImageFormat.SRGB, data=image)

  with vision.ImageClassifier.create_from_options(options) as classifier:
    return [child.categories(classifier.classify(mp_image(image)).classifications[0]
                             .categories) for image in images]


if __name__ == "__main__":
  child.main(classify)
