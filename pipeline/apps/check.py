"""Both app runtimes classify the same test images; each must agree with the LiteRT
interpreter, the runtime this project evaluates and gates with."""

import os
import tempfile
from typing import Callable, Dict, Sequence, Tuple

import numpy as np

from pipeline.apps import runtimes
from pipeline.errors import PipelineError

# The runtimes and the interpreter dequantize the same uint8 output (steps of 1/256 for a
# softmax) from the same pixels, so a right model scores the same, but not always exactly:
# Task Library's own TFLite rounds some int8 kernels differently. On the 897 HAM10000 test
# images of one int8 build it matched the interpreter exactly on 884,
# by one step on 9, two on 3 and three on 1 (MediaPipe Tasks: 897 exact). A wrong input
# encoding moves far more images: on the same model, pixels in BGR order moved the median
# image by 125 steps, a 1-pixel shift by 2 (38% of images more than 4), a JPEG re-encode
# (quality 95) by 1 (27% more than 4). So a runtime passes when every image's scores are
# within SCORE_TOLERANCE (4 steps) and at least ROUNDING_SHARE of the images within one step.
STEP = 1 / 256
SCORE_TOLERANCE = 4 * STEP + 1e-6
ROUNDING_SHARE = 0.95


def check_models(models: Dict[str, bytes], pixels: np.ndarray, keys: Sequence[str],
                 labels: Sequence[str], tmp_root: str,
                 predict: Callable[[], Dict[str, np.ndarray]]
                 ) -> Tuple[Dict[str, Dict[str, dict]], Dict[str, np.ndarray]]:
  """Classifies `pixels` with every model in every app runtime, against the LiteRT
  interpreter's probabilities (the ones the evaluate stage scores).

  The pixels are handed to the runtimes as they are (array files, at the models' input
  size, so the runtimes' own resize is a no-op and all paths see the same pixels), as an app
  hands over a decoded bitmap. Each runtime's children start once for all the models, and
  they run side by side while this process runs `predict`: the work is CPU-bound in every
  process, and together they keep the cores busier than one after the other.

  Args:
    models: {name: the shipped .tflite, metadata included}.
    pixels: uint8 [N, H, W, 3] at the models' input size.
    keys: the images' names, for messages.
    labels: class names in output order.
    tmp_root: where to write the temporary models and images.
    predict: returns the interpreter's probabilities [N, K] on `pixels` in output order, for
      every name in `models` at least (what else it returns is passed back).

  Returns:
    (per model name, per runtime key: {"runtime", "status" ("passed" or "skipped"), "images",
    "agree", "near_ties" (agreeing picks a few output steps below the interpreter's top-1),
    "max_score_diff", "within_one_step" (share of images), "score_tolerance", "message"};
    what `predict` returned).

  Raises:
    PipelineError: a runtime that is installed fails, disagrees with the interpreter's top-1,
      or differs from its scores by more than SCORE_TOLERANCE on an image or by more than one
      output step on over 1 - ROUNDING_SHARE of them.
  """
  with tempfile.TemporaryDirectory(dir=tmp_root) as tmp:
    model_paths = []
    for i, blob in enumerate(models.values()):
      model_paths.append(os.path.join(tmp, f"model_{i}.tflite"))
      with open(model_paths[-1], "wb") as f:
        f.write(blob)
    answers, probs = runtimes.classify_everywhere(model_paths, pixels, tmp, meanwhile=predict)
  results = {}
  for i, name in enumerate(models):
    results[name] = {}
    for runtime in runtimes.ALL:
      got = answers[runtime.key]
      if isinstance(got, runtimes.RuntimeMissing):
        results[name][runtime.key] = {"runtime": runtime.name, "status": "skipped",
                                      "images": 0, "agree": 0, "message": str(got)}
        continue
      results[name][runtime.key] = compare(runtime.name, got[i], probs[name], keys, labels)
      results[name][runtime.key]["runtime"] = runtime.name
  return results, probs


def answer_scores(answers, num_classes: int) -> np.ndarray:
  """A runtime's answers (per image, categories with index and score) as [N, K] scores."""
  scores = np.zeros((len(answers), num_classes), np.float32)
  for i, categories in enumerate(answers):
    for c in categories:
      scores[i, c["index"]] = c["score"]
  return scores


def compare(name: str, answers, probs: np.ndarray, keys: Sequence[str],
            labels: Sequence[str]) -> dict:
  """One runtime's answers against the interpreter's probabilities; raises on a mismatch."""
  for categories in answers:
    for c in categories:
      if c["label"] != labels[c["index"]]:
        raise PipelineError(f"{name} names class {c['index']} {c['label']!r}, the model's "
                            f"labels say {labels[c['index']]!r}: the embedded labels are wrong")
  scores = answer_scores(answers, probs.shape[1])
  # A runtime's pick is right if the interpreter scores it within SCORE_TOLERANCE of its own
  # top-1: two classes near a tie swap on a rounding difference (a HAM10000 build: Task
  # Library picked mel, the interpreter akiec, one step apart on the 8-view model).
  picks = [categories[0]["index"] for categories in answers]
  exact = [probs[i, t] >= probs[i].max() - 1e-6 for i, t in enumerate(picks)]
  agree = [probs[i, t] >= probs[i].max() - SCORE_TOLERANCE for i, t in enumerate(picks)]
  diff = np.abs(scores - probs).max(axis=1)
  wrong = "the model's metadata or input encoding is wrong"
  for i in range(len(answers)):
    if not agree[i]:
      raise PipelineError(f"{name}'s top-1 ({labels[picks[i]]}) differs from the interpreter's "
                          f"({labels[int(probs[i].argmax())]}) by more than "
                          f"{round(SCORE_TOLERANCE / STEP)} output steps on test image "
                          f"{keys[i]}: {wrong}")
    if diff[i] > SCORE_TOLERANCE:
      raise PipelineError(f"{name}'s scores differ from the interpreter's by {diff[i]:.4f} "
                          f"(tolerance {SCORE_TOLERANCE:.4f}) on test image {keys[i]}: {wrong}")
  rounding = float(np.mean(diff <= STEP + 1e-6)) if len(diff) else 1.0
  if rounding < ROUNDING_SHARE:
    raise PipelineError(f"{name}'s scores differ from the interpreter's by more than one output "
                        f"step on {1 - rounding:.0%} of the {len(answers)} test images (at most "
                        f"{1 - ROUNDING_SHARE:.0%} is kernel rounding): {wrong}")
  ties = len(answers) - int(sum(exact))
  return {"status": "passed", "images": len(answers), "agree": int(sum(agree)),
          "near_ties": ties, "max_score_diff": float(diff.max()) if len(diff) else 0.0,
          "within_one_step": rounding, "score_tolerance": SCORE_TOLERANCE,
          "message": f"{name} ImageClassifier: top-1 equals the interpreter's on "
                     f"{sum(exact)}/{len(answers)} test images"
                     + (f" (the other {ties} near a tie)" if ties else "")
                     + f", scores within {float(diff.max()) if len(diff) else 0:.4f}"
                     + f" ({rounding:.1%} within one output step)"}
