"""Stage `evaluate`: every variant scored on the test split through the TFLite interpreter,
paired with float32, and the referral threshold fit on validation and scored on test."""

import dataclasses

from pipeline import atomic
from pipeline import evaluate as evaluate_lib
from pipeline import layer_error
from pipeline import referral as referral_lib
from pipeline import report as report_lib
from pipeline.config import BuildConfig
from pipeline.stages.state import BuildState

PREDICTIONS = "predictions.csv"  # Per test image, for QA's own confusion matrices.
LAYER_ERROR_PLOT = "layer_error.png"


def run(config: BuildConfig, state: BuildState) -> BuildState:
  """Scores the variants (and the referral threshold, when the dataset has serious classes)."""
  test, labels, norm = state.bundle.splits["test"], state.labels, config.model.normalization
  models, test_probs = evaluate_lib.evaluate_models(
      state.blobs, test.pixels(), test.labels, labels, norm, keys=test.keys,
      paired_rounds=config.gate.bootstrap_rounds, seed=config.seed,
      log=lambda message: state.log(f"evaluate: {message}"), known=state.test_probs)
  report_lib.plot_confusion_matrices(
      {name: models[name]["confusion_matrix"] for name in ("float32", "int8")}, labels,
      state.path("confusion_matrix.png"))
  for name, m in models.items():
    state.log(f"evaluate: {name:9s} accuracy {m['accuracy']:.4f}  balanced "
              f"{m['balanced_accuracy']:.4f}"
              + (f"  agreement {m['top1_agreement']:.4f}" if "top1_agreement" in m else ""))
  state = dataclasses.replace(state, models=models, test_probs=test_probs)
  serious = config.referral.classes(config.data.data_format, labels)
  if serious:
    r = _referral(config, state, serious)
    state.log(f"evaluate: referral threshold {r['threshold']:.3f} on P({'+'.join(serious)}) "
              f"for {r['target_sensitivity']:.0%} sensitivity on new photos (validation: "
              f"{r['validation']['sensitivity']:.1%} of {r['validation']['positives']}"
              + ("" if r["enough_cases"] else ", too few for that promise")
              + "); test sensitivity / "
              "specificity: " + ", ".join(f"{n} {t['sensitivity']:.3f} / {t['specificity']:.3f}"
                                          for n, t in r["test"].items()))
    state = dataclasses.replace(state, referral=r)
  atomic.write_text(state.path(PREDICTIONS), evaluate_lib.predictions_csv(
      test.keys, test.labels, labels, test_probs, state.referral))
  return dataclasses.replace(state, layer_error=_layer_error(config, state))


def _layer_error(config: BuildConfig, state: BuildState) -> dict:
  """Where int8 loses precision: the per-layer map on the first test images, and its plot."""
  pixels = state.bundle.splits["test"].pixels()[:layer_error.IMAGES]
  error_map = layer_error.layer_map(state.blobs["int8"], state.blobs["float32"], pixels,
                                    config.model.normalization)
  layer_error.plot(error_map, state.path(LAYER_ERROR_PLOT))
  state.log(f"evaluate: int8 layers losing the most SQNR: {layer_error.worst_text(error_map)}")
  return error_map


def _referral(config: BuildConfig, state: BuildState, serious) -> dict:
  """Fits the threshold on the shipped model's validation scores, scores it on test for int8
  and float32, and plots both ROC curves."""
  val, test, labels = state.bundle.splits["val"], state.bundle.splits["test"], state.labels
  scored = {name: state.blobs[name] for name in ("int8", "float32")}
  val_probs = evaluate_lib.predict_models(
      scored, val.pixels(), labels, config.model.normalization,
      log=lambda message: state.log(f"evaluate: referral, validation split: {message}"))
  test_probs = {n: state.test_probs[n] for n in scored}
  referral = referral_lib.evaluate(
      val_probs, val.labels, test_probs, test.labels, list(labels), serious,
      config.referral.sensitivity, bootstrap_rounds=config.gate.bootstrap_rounds // 2,
      seed=config.seed, confidence=config.referral.confidence)
  referral_lib.plot_roc(test_probs, test.labels, list(labels), referral,
                        state.path("referral_roc.png"))
  return referral
