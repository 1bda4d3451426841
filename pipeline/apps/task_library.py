"""Child process: TFLite Task Library's ImageClassifier classifies images, as an Android app's
`ImageClassifier.createFromFileAndOptions` would. Started by `runtimes.classify`.

Task Library cannot be imported in a process that has TensorFlow loaded (its pybind types
clash), so TensorFlow is blocked here before anything else is imported.
"""

import json
import sys
from typing import Sequence


def main(argv: Sequence[str]) -> None:
  sys.modules["tensorflow"] = None  # Task Library must not see TensorFlow: it would clash.
  from pipeline import native  # pylint: disable=g-import-not-at-top
  native.load_libusb()
  from tflite_support.task import core, processor, vision  # pylint: disable=g-import-not-at-top
  model_path, image_paths = argv[0], argv[1:]
  options = vision.ImageClassifierOptions(
      base_options=core.BaseOptions(file_name=model_path),
      classification_options=processor.ClassificationOptions(max_results=-1))
  classifier = vision.ImageClassifier.create_from_options(options)
  results = []
  for path in image_paths:
    categories = classifier.classify(vision.TensorImage.create_from_file(path)
                                     ).classifications[0].categories
    results.append([{"index": c.index, "label": c.category_name,
                     "display_name": c.display_name, "score": c.score} for c in categories])
  print(json.dumps(results))


if __name__ == "__main__":
  try:
    main(sys.argv[1:])
  except Exception as e:  # pylint: disable=broad-except
    # One line for the parent to relay; the parent turns it into a PipelineError.
    print(f"{type(e).__name__}: {e}".splitlines()[0], file=sys.stderr)
    sys.exit(1)
