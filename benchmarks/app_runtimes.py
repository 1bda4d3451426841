r"""App runtimes against the LiteRT interpreter, image by image, in output steps.

The build's metadata stage checks that TFLite Task Library and MediaPipe Tasks give the
interpreter's scores on the test split (pipeline/apps/check.py). This benchmark shows how
far apart they are, as a histogram of each image's largest score difference in output steps
(1/256 for the uint8 softmax), and sets that beside what a wrong input encoding does to the
same model in the interpreter (channels in BGR order, a 1-pixel shift, a JPEG re-encode at
quality 95): the figures the check's tolerance is chosen between.

  python -m benchmarks.app_runtimes --build_dir=build/ham10000 --variant=int8 \
      --output_json=app_runtimes.json
"""

import io
import os
from typing import Dict, List

import numpy as np
from absl import app
from absl import flags

from benchmarks import common

FLAGS = flags.FLAGS


def define_flags() -> None:
  """Defined when run, not on import (see benchmarks/compare.py)."""
  flags.DEFINE_string("build_dir", "", "A finished build: its test split and model files.")
  flags.DEFINE_multi_string("variant", ["int8"], "Model variants to check (repeatable): int8, "
                            "int8_tta8.")
  flags.DEFINE_string("output_json", "app_runtimes.json", "JSON report path.")
  flags.DEFINE_string("output_md", "", "Markdown report path (default: beside the JSON).")


def _jpeg(pixels: np.ndarray, quality: int = 95) -> np.ndarray:
  from PIL import Image  # pylint: disable=g-import-not-at-top
  out = []
  for img in pixels:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=quality)
    out.append(np.asarray(Image.open(buf)))
  return np.stack(out)


ENCODING_ERRORS = {  # name -> the pixels a wrongly encoding app would feed
    "BGR channel order": lambda px: np.ascontiguousarray(px[..., ::-1]),
    "shifted 1 pixel": lambda px: np.roll(px, 1, axis=2),
    "JPEG re-encode (q95)": _jpeg,
}


def step_figures(scores: np.ndarray, reference: np.ndarray) -> dict:
  """Per image, the largest |score - reference| in output steps: histogram and shares."""
  from pipeline.apps import check  # pylint: disable=g-import-not-at-top
  steps = np.rint(np.abs(scores - reference).max(axis=1) / check.STEP).astype(int)
  return {"images": len(steps), "histogram": np.bincount(steps).tolist(),
          "max_steps": int(steps.max()) if len(steps) else 0,
          "within_one_step": float(np.mean(steps <= 1)),
          "within_tolerance": float(np.mean(steps <= round(check.SCORE_TOLERANCE / check.STEP))),
          "top1_changed": float(np.mean(scores.argmax(1) != reference.argmax(1)))}


def measure(build_dir: str, variants: List[str]) -> dict:
  """Every app runtime and every encoding error against the interpreter, per variant.

  Raises:
    PipelineError: not a finished build, or a variant it does not have.
  """
  import tempfile  # pylint: disable=g-import-not-at-top
  from pipeline import config as config_lib  # pylint: disable=g-import-not-at-top
  from pipeline.apps import check, runtimes  # pylint: disable=g-import-not-at-top
  from pipeline.errors import PipelineError  # pylint: disable=g-import-not-at-top
  from pipeline.runner import LiteRunner  # pylint: disable=g-import-not-at-top
  config, test = common.build_split(build_dir)
  pixels = test.pixels()
  common.progress(f"{len(pixels)} test images of {build_dir}")
  payload: Dict[str, dict] = {"build_dir": build_dir, "images": len(pixels), "variants": {}}
  models = [os.path.join(build_dir, config_lib.model_file_name(v)) for v in variants]
  for model in models:
    if not os.path.isfile(model):
      raise PipelineError(f"{model}: no such file; give a --variant the build wrote")
  with tempfile.TemporaryDirectory() as tmp:  # Every runtime's children side by side.
    answers, _ = runtimes.classify_everywhere(models, pixels, tmp)
  for i, (variant, model) in enumerate(zip(variants, models)):
    with open(model, "rb") as f:
      runner = LiteRunner(f.read(), config.model.normalization)
    probs = runner.predict(pixels)
    rows = {}
    for runtime in runtimes.ALL:
      got = answers[runtime.key]
      rows[runtime.name] = ({"skipped": str(got)} if isinstance(got, runtimes.RuntimeMissing)
                            else step_figures(check.answer_scores(got[i], probs.shape[1]), probs))
    for name, encode in ENCODING_ERRORS.items():
      rows[f"interpreter, {name}"] = step_figures(runner.predict(encode(pixels)), probs)
    payload["variants"][variant] = rows
    common.progress(f"{variant}: done")
  return payload


def markdown(payload: dict) -> List[str]:
  lines = [f"Against the LiteRT interpreter on the {payload['images']} test images of "
           f"{payload['build_dir']}: each image's largest score difference, in output steps.", ""]
  for variant, rows in payload["variants"].items():
    lines += [f"{variant}:", "",
              "| runtime or input | images at 0 / 1 / 2 / 3 / 4+ steps | max steps | within one "
              "step | within the check's tolerance | top-1 changed |",
              "|---|---|---:|---:|---:|---:|"]
    for name, r in rows.items():
      if "skipped" in r:
        lines.append(f"| {name} | skipped: {r['skipped']} | | | | |")
        continue
      h = r["histogram"] + [0] * 4
      counts = " / ".join(str(c) for c in h[:4]) + f" / {sum(h[4:])}"
      lines.append(f"| {name} | {counts} | {r['max_steps']} | {r['within_one_step']:.1%} | "
                   f"{r['within_tolerance']:.1%} | {r['top1_changed']:.1%} |")
    lines.append("")
  return lines


def main(argv: List[str]) -> None:
  common.main("benchmarks.app_runtimes", argv,
              lambda: measure(FLAGS.build_dir, FLAGS.variant), markdown, FLAGS.output_json,
              FLAGS.output_md)


if __name__ == "__main__":
  define_flags()
  app.run(main)
