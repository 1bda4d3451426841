"""Evaluate stage: TFLite models on the test split through LiteRT, scored and compared."""

import os
import time
from typing import Callable, Dict, Optional, Sequence, Tuple

import numpy as np

from pipeline import metrics
from pipeline import parity
from pipeline.errors import PipelineError
from pipeline.preprocessing import Normalization
from pipeline.runner import LiteRunner

# The build scores with every core: nothing else runs then, and XNNPACK's threads split each
# op's output, so the probabilities are bit for bit the one-thread ones (BUILD.md, Times).
THREADS = os.cpu_count() or 1
TTA_VARIANT = "int8_tta8"
TTA_REFERENCE = "float32_tta8"  # float32 over the same 8 views: int8_tta8's parity reference.


def predict_models(models: Dict[str, bytes], pixels: np.ndarray, labels: Sequence[str],
                   normalization: Normalization,
                   log: Optional[Callable[[str], None]] = None,
                   known: Optional[Dict[str, np.ndarray]] = None) -> Dict[str, np.ndarray]:
  """Every model's probabilities on the same images through LiteRT, in `labels` order.

  Args:
    models: {variant: tflite bytes}.
    pixels: uint8 images [N, S, S, 3].
    labels: class names in the order wanted.
    normalization: the models' input normalization.
    log: a progress line after each model, if given.
    known: {variant: probabilities} this function returned earlier for the same models and
      images (the metadata stage's), reused instead of running those models again.

  Returns:
    {variant: probabilities [N, K]}, columns mapped by each model's embedded labels.
  """
  out = {}
  for i, (name, blob) in enumerate(models.items(), 1):
    if known and name in known:
      out[name] = known[name]
      if log:
        log(f"{name} on {len(pixels)} images: the metadata stage's ({i}/{len(models)})")
      continue
    t0 = time.time()
    out[name] = align_to_labels(LiteRunner(blob, normalization, THREADS).predict(pixels),
                                embedded_labels(blob), labels, name)
    if log:
      log(f"{name} on {len(pixels)} images in {time.time() - t0:.0f} s ({i}/{len(models)})")
  return out


def score_models(probs: Dict[str, np.ndarray], y_true: np.ndarray, labels: Sequence[str],
                 keys: Optional[Sequence[str]] = None, reference: str = "float32",
                 bootstrap_rounds: int = 1000, paired_rounds: int = 2000, seed: int = 0,
                 reference_of: Optional[Dict[str, str]] = None) -> Dict[str, dict]:
  """Metrics of every model, and each one's paired comparison with its reference.

  Args:
    probs: {variant: probabilities [N, K]} on the same images; must contain the references.
    y_true: true class indices.
    labels: class names in column order.
    keys: image ids (named in the flip lists).
    reference: the variant the others are compared with.
    bootstrap_rounds: for each model's 95% intervals (0 to skip).
    paired_rounds: for the paired drop's interval.
    seed: bootstrap seed.
    reference_of: variants compared with another reference (int8_tta8: float32_tta8).

  Returns:
    {variant: metrics.classification_report(...), plus "reference" and "paired"
    (parity.paired_comparison) for every variant that is not a reference}.
  """
  reference_of = dict(reference_of or {})
  references = {reference, *reference_of.values()}
  out = {}
  for name, p in probs.items():
    ref = None if name in references else reference_of.get(name, reference)
    out[name] = metrics.classification_report(
        y_true, p, labels, reference_probs=None if ref is None else probs[ref],
        bootstrap_rounds=bootstrap_rounds, seed=seed)
    if ref is not None:
      out[name]["reference"] = ref
      out[name]["paired"] = parity.paired_comparison(y_true, probs[ref], p, labels, keys,
                                                     paired_rounds, seed)
  return out


def predict_dihedral_mean(model: bytes, pixels: np.ndarray, labels: Sequence[str],
                          normalization: Normalization,
                          as_is: Optional[np.ndarray] = None) -> np.ndarray:
  """A model's probabilities averaged over the 8 dihedral views of each image (what the
  int8_tta8 variant computes in its graph), in `labels` order. `as_is`, if given, is the
  model's probabilities on the images as they are (the first view), already computed."""
  from pipeline import preprocessing  # pylint: disable=g-import-not-at-top
  runner, model_labels = LiteRunner(model, normalization, THREADS), embedded_labels(model)
  views = []
  for k, mirrored in preprocessing.DIHEDRAL:
    if (k, mirrored) == (0, False) and as_is is not None:
      views.append(as_is)
      continue
    views.append(align_to_labels(runner.predict(preprocessing.dihedral_view_np(
        pixels, k, mirrored)), model_labels, labels, "float32 over 8 views"))
  return np.mean(views, axis=0)


def predict_variants(models: Dict[str, bytes], pixels: np.ndarray, labels: Sequence[str],
                     normalization: Normalization, reference: str = "float32",
                     log: Optional[Callable[[str], None]] = None,
                     known: Optional[Dict[str, np.ndarray]] = None) -> Dict[str, np.ndarray]:
  """Every probability `evaluate_models` scores: `predict_models`, plus int8_tta8's paired
  reference "float32_tta8" (`reference` over the same 8 views, no file) when both models are
  there. `log` and `known` as in `predict_models`."""
  probs = predict_models(models, pixels, labels, normalization, log, known)
  if TTA_VARIANT in models and reference in models:  # Like with like: both over 8 views.
    what = f"{TTA_REFERENCE} ({reference} over the 8 views) on {len(pixels)} images"
    if known and TTA_REFERENCE in known:
      probs[TTA_REFERENCE] = known[TTA_REFERENCE]
      if log:
        log(f"{what}: the metadata stage's")
    else:
      t0 = time.time()
      probs[TTA_REFERENCE] = predict_dihedral_mean(models[reference], pixels, labels,
                                                   normalization, as_is=probs[reference])
      if log:
        log(f"{what} in {time.time() - t0:.0f} s")
  return probs


def evaluate_models(models: Dict[str, bytes], pixels: np.ndarray, y_true: np.ndarray,
                    labels: Sequence[str], normalization: Normalization,
                    keys: Optional[Sequence[str]] = None, reference: str = "float32",
                    bootstrap_rounds: int = 1000, paired_rounds: int = 2000,
                    seed: int = 0, log: Optional[Callable[[str], None]] = None,
                    known: Optional[Dict[str, np.ndarray]] = None
                    ) -> Tuple[Dict[str, dict], Dict[str, np.ndarray]]:
  """`score_models` of `predict_variants`, with each model's "size_bytes"; `log`, if given,
  gets a progress line per model; `known` as in `predict_models`.

  With int8_tta8 among the models, "float32_tta8" (the reference's probabilities averaged
  over the same 8 views, no file) is scored too and is int8_tta8's paired reference.

  Returns:
    ({variant: scores}, {variant: probabilities}) so callers can reuse the predictions.
  """
  probs = predict_variants(models, pixels, labels, normalization, reference, log, known)
  reference_of = {TTA_VARIANT: TTA_REFERENCE} if TTA_REFERENCE in probs else {}
  out = score_models(probs, y_true, labels, keys, reference, bootstrap_rounds, paired_rounds,
                     seed, reference_of)
  for name, blob in models.items():
    out[name]["size_bytes"] = len(blob)
  return out, probs


def embedded_labels(tflite: bytes):
  """The labels packed in a model's metadata, or None for a model without metadata."""
  from pipeline import tflite_metadata  # pylint: disable=g-import-not-at-top
  try:
    return tflite_metadata.read(tflite)["labels"]
  except PipelineError:
    return None


def align_to_labels(probs: np.ndarray, model_labels, labels: Sequence[str],
                    where: str) -> np.ndarray:
  """Reorders a model's output columns from its own label order into `labels` order.

  Scoring by name, not by index, is what makes a model whose embedded label order is wrong
  score badly (as it would in an app) instead of silently matching the float model.

  Raises:
    PipelineError: the model's labels are not the dataset's labels.
  """
  if model_labels is None:
    return probs
  if sorted(model_labels) != sorted(labels):
    raise PipelineError(f"{where}: its embedded labels {list(model_labels)} are not the "
                        f"dataset's labels {list(labels)}")
  return probs[:, [list(model_labels).index(l) for l in labels]]


def predictions_csv(keys: Sequence[str], y_true: np.ndarray, labels: Sequence[str],
                    probs: Dict[str, np.ndarray], referral: Optional[dict] = None,
                    top_k: int = 3) -> str:
  """predictions.csv for QA: one row per test image with its true class, each variant's
  top-k classes and scores, whether int8's top-1 agrees with float32's and, with a referral
  threshold, the shipped model's serious-class score and decision."""
  import csv  # pylint: disable=g-import-not-at-top
  import io  # pylint: disable=g-import-not-at-top
  from pipeline import referral as referral_lib  # pylint: disable=g-import-not-at-top
  variants = list(probs)
  k = min(top_k, len(labels))
  header = ["image", "true"]
  for v in variants:
    for rank in range(1, k + 1):
      header += [f"{v}_top{rank}", f"{v}_top{rank}_score"]
  agree = "int8" in probs and "float32" in probs
  header += ["int8_agrees_with_float32"] if agree else []
  score = None
  if referral:
    score = referral_lib.serious_score(probs[referral["shipped_model"]], labels,
                                       referral["classes"])
    header += ["referral_score", "refer"]
  order = {v: np.argsort(-p, axis=1, kind="stable")[:, :k] for v, p in probs.items()}
  buffer = io.StringIO()
  writer = csv.writer(buffer, lineterminator="\n")
  writer.writerow(header)
  for i, key in enumerate(keys):
    row = [key, labels[int(y_true[i])]]
    for v in variants:
      for c in order[v][i]:
        row += [labels[c], f"{probs[v][i, c]:.4f}"]
    if agree:
      row.append(str(order["int8"][i, 0] == order["float32"][i, 0]).lower())
    if score is not None:
      row += [f"{score[i]:.4f}", str(bool(score[i] >= referral["threshold"])).lower()]
    writer.writerow(row)
  return buffer.getvalue()
