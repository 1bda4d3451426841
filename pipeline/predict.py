r"""Classifies images with a built .tflite and prints the top-k labels with display names.

  python -m pipeline.predict --model=android_assets/model.tflite photo1.jpg photo2.png
"""

import sys
from typing import List

from absl import app
from absl import logging
from absl import flags

from pipeline.errors import PipelineError

flags.DEFINE_string("model", "android_assets/model.tflite", "A .tflite built by pipeline.build.")
flags.DEFINE_integer("top_k", 5, "How many labels to print per image (at most the number of "
                     "classes).", lower_bound=1)
FLAGS = flags.FLAGS


def predict(model_path: str, image_paths: List[str], top_k: int) -> List[dict]:
  """Top-k predictions per image, using the labels and display names embedded in the model.

  Args:
    model_path: a .tflite with metadata.
    image_paths: JPEG or PNG files of any size.
    top_k: labels per image.

  Returns:
    [{"image": path, "top": [{"label", "display_name", "score"}, ...], "refer": bool or None,
      "referral_score": float or None}, ...]; "refer" is None without a referral threshold
    that was fit for this model file (referral.json beside it).

  Raises:
    PipelineError: the model or an image cannot be read.
  """
  import numpy as np  # pylint: disable=g-import-not-at-top
  from pipeline import images as images_lib  # pylint: disable=g-import-not-at-top
  from pipeline.runner import load_model_file  # pylint: disable=g-import-not-at-top
  from pipeline import referral as referral_lib  # pylint: disable=g-import-not-at-top
  runner, meta = load_model_file(model_path)
  names = meta["display_names"] or meta["labels"]
  referral = referral_lib.load_for_model(model_path, meta["sha256"]) if meta["sha256"] else None
  results = []
  for path in image_paths:
    try:
      pixels, _ = images_lib.load_rgb(path, runner.image_size)
    except images_lib.ImageError as e:
      raise PipelineError(f"{path}: {e}; give a JPEG or PNG image") from e
    probs = runner.predict(pixels[None])[0]
    order = np.argsort(-probs, kind="stable")[:top_k]
    score = (float(referral_lib.serious_score(probs[None], meta["labels"],
                                              referral["classes"])[0]) if referral else None)
    results.append({"image": path, "top": [
        {"label": meta["labels"][i], "display_name": names[i], "score": float(probs[i])}
        for i in order], "refer": None if referral is None else score >= referral["threshold"],
                    "referral_score": score})
  return results


def main(argv: List[str]) -> None:
  logging.set_verbosity(logging.WARNING)  # TensorFlow's checkpoint INFO lines drown progress.
  from pipeline.assets import DISCLAIMER  # pylint: disable=g-import-not-at-top
  if len(argv) < 2:
    raise app.UsageError("give one or more image files: python -m pipeline.predict "
                         "--model=M.tflite IMAGE...")
  try:
    results = predict(FLAGS.model, argv[1:], FLAGS.top_k)
  except PipelineError as e:
    sys.exit(f"pipeline.predict: error: {e}")
  for r in results:
    print(r["image"])
    for t in r["top"]:
      print(f"  {t['score']:6.3f}  {t['label']:<12s} {t['display_name']}")
    if r["refer"] is not None:
      print(f"  refer: {'yes' if r['refer'] else 'no'} (P(serious) {r['referral_score']:.3f})")
  print(f"\n{DISCLAIMER}")


def entry_point() -> None:
  """Console script `tflite-predict`."""
  app.run(main)


if __name__ == "__main__":
  entry_point()
