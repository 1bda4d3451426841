"""Child process: TFLite Task Library's ImageClassifier classifies images, as an Android app's
`ImageClassifier.createFromFileAndOptions` would. Started by `runtimes.classify`.

Task Library cannot be imported in a process that has TensorFlow loaded (its pybind types
clash), so TensorFlow is blocked here before anything else is imported.
"""

import sys
from typing import List, Sequence

from pipeline.apps import child


def classify(model_path: str, images: Sequence[child.Image]) -> List[List[dict]]:
  sys.modules["tensorflow"] = None  # Task Library must not see TensorFlow: it would clash.
  from pipeline import native  # pylint: disable=g-import-not-at-top
  native.load_libusb()
  from tflite_support.task import core, processor, vision  # pylint: disable=g-import-not-at-top
  options = vision.ImageClassifierOptions(
      base_options=core.BaseOptions(file_name=model_path),
      classification_options=processor.ClassificationOptions(max_results=-1))
  classifier = vision.ImageClassifier.create_from_options(options)

  def tensor_image(image: child.Image):
    if isinstance(image, str):
      return vision.TensorImage.create_from_file(image)
    return vision.TensorImage.create_from_array(image)

  return [child.categories(classifier.classify(tensor_image(image)).classifications[0]
                           .categories) for image in images]


if __name__ == "__main__":
  child.main(classify)
