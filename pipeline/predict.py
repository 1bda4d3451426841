r"""Classifies images with a built .tflite and prints the top-k labels with display names.

  python -m pipeline.predict --model=build/demo/android_assets/model.tflite photo1.jpg photo2.png
  python -m pipeline.predict --model=... --json photo.jpg   # one JSON object per image

A .tflite is read with the LiteRT interpreter and the metadata reader alone: TensorFlow is
never imported, so the command starts fast and prints nothing it did not mean to.
"""

import json
import sys
from typing import List, Tuple

from absl import app
from absl import logging
from absl import flags

from pipeline.errors import PipelineError

flags.DEFINE_string("model", "android_assets/model.tflite", "A .tflite built by pipeline.build "
                    "(or a build's model_float.keras).")
flags.DEFINE_integer("top_k", 5, "How many labels to print per image (at most the number of "
                     "classes).", lower_bound=1)
flags.DEFINE_bool("json", False, "Print one JSON object per image (file, model name and "
                  "version, top-k labels with display names and scores, referral decision).")
FLAGS = flags.FLAGS

DEMO_WARNING = ("warning: this is the pipeline's synthetic demo model; it knows nothing about "
                "skin and must never be used on real images")


def predict(model_path: str, image_paths: List[str], top_k: int) -> Tuple[dict, List[dict]]:
  """Top-k predictions per image, using the labels and display names embedded in the model.

  Args:
    model_path: a .tflite with metadata.
    image_paths: JPEG or PNG files of any size.
    top_k: labels per image.

  Returns:
    (the model's metadata: name, version, ...; per image {"image": path, "top": [{"label",
    "display_name", "score"}, ...], "refer": bool or None, "referral_score": float or None}
    or, for an image that cannot be read, {"image": path, "error": "..."}). "refer" is None
    without a referral threshold fit for this model file (referral.json beside it).

  Raises:
    PipelineError: the model cannot be read.
  """
  from pipeline import images as images_lib  # pylint: disable=g-import-not-at-top
  from pipeline.classifier import Classifier  # pylint: disable=g-import-not-at-top
  classifier = Classifier(model_path)
  results = []
  for path in image_paths:
    try:
      results.append({"image": path, **classifier.classify_image(path, top_k)})
    except images_lib.ImageError as e:  # The other images are still classified.
      results.append({"image": path, "error": f"{e}; give a JPEG or PNG image"})
  return classifier.meta, results


def main(argv: List[str]) -> None:
  logging.set_verbosity(logging.WARNING)
  if len(argv) < 2:
    raise app.UsageError("give one or more image files: python -m pipeline.predict "
                         "--model=M.tflite IMAGE...")
  if not FLAGS.model.endswith(".keras") and "tensorflow" not in sys.modules:
    # tflite-support's metadata reader imports TensorFlow only to open files, and falls back
    # to open() without it: seconds of start-up and its log lines saved.
    sys.modules["tensorflow"] = None
  from pipeline.shipped import DISCLAIMER  # pylint: disable=g-import-not-at-top
  try:
    meta, results = predict(FLAGS.model, argv[1:], FLAGS.top_k)
  except PipelineError as e:
    sys.exit(f"pipeline.predict: error: {e}")
  model = {"name": meta.get("name"), "version": meta.get("version")}
  demo = (meta.get("name") or "").startswith("Pipeline demo classifier")
  if FLAGS.json:
    for r in results:
      print(json.dumps({**r, "model": model, "disclaimer": DISCLAIMER}))
  else:
    print(f"model: {model['name'] or FLAGS.model} (version {model['version'] or 'unknown'})")
    if demo:
      print(DEMO_WARNING)
    for r in results:
      if "error" in r:
        continue
      print(r["image"])
      for t in r["top"]:
        print(f"  {t['score']:6.3f}  {t['label']:<12s} {t['display_name']}")
      if r["refer"] is not None:
        print(f"  refer: {'yes' if r['refer'] else 'no'} (P(serious) {r['referral_score']:.3f})")
    print(f"\n{DISCLAIMER}")
  bad = [r for r in results if "error" in r]
  for r in bad:
    print(f"pipeline.predict: error: {r['image']}: {r['error']}", file=sys.stderr)
  if bad:
    sys.exit(1)


def entry_point() -> None:
  """Console script `tflite-predict`."""
  app.run(main)


if __name__ == "__main__":
  entry_point()
