r"""Headroom: how far the given models could go without training a better one.

For each model, and for the ensemble of all of them (mean probabilities), on one split:
- balanced accuracy as shipped;
- with test-time augmentation over the 8 dihedral views (4 rotations x flip; dermoscopy has
  no canonical orientation), which costs 8x the inference;
- at the model's best operating point: per-class offsets to the log-probabilities fit on
  the scored split itself (`metrics.fit_class_offsets`). This uses the answers, so it is an
  upper bound on what re-thresholding can do, never a result;
- with --fit_split: with offsets fit on another split (e.g. val), which is what a user
  could actually deploy;
- with --tta_zooms: the 8 dihedral views of centre crops of each image as well (each crop
  resized back to the model's input, as RandomZoom does in training), per zoom and averaged
  over all 8 x zooms views.

If even the ensemble with TTA at its best operating point is short of a target, no choice of
epoch, threshold or averaging of these models reaches it: the models themselves must get
better (data, resolution, backbone).

  python -m benchmarks.headroom --model=build/a/model_float.keras \
      --model=build/b/model_float.keras --build_dir=build/a --split=test --fit_split=val \
      --output_json=headroom.json --tta_zooms=0.875,0.75
"""

import functools
from typing import Dict, List, Optional, Sequence

import numpy as np
from absl import app
from absl import flags

from benchmarks import common

FLAGS = flags.FLAGS


def define_flags() -> None:
  """Defined when run, not on import: the tests import benchmark functions into one process,
  where two benchmarks' flags of the same name (--model, --build_dir) would clash."""
  flags.DEFINE_multi_string("model", [], "A .tflite with metadata, or a build's model_float.keras "
                            "(repeatable; two or more also score their ensemble).")
  common.define_data_flags(flags)
  flags.DEFINE_string("split", "test", "The split to score.")
  flags.DEFINE_string("fit_split", "", "Also fit per-class offsets on this split (e.g. val) and "
                      "score them on --split.")
  flags.DEFINE_list("tta_zooms", [], "Centre-crop zooms (fractions of the side, in (0, 1)) "
                    "whose 8 dihedral views are scored too, each zoom alone and all views "
                    "together with the uncropped ones (e.g. 0.875,0.75).")
  flags.DEFINE_string("output_json", "headroom.json", "JSON report path.")
  flags.DEFINE_string("output_md", "", "Markdown report path (default: beside the JSON).")

ENSEMBLE = "ensemble"


def dihedral_views():
  """The 8 symmetries of a square image (preprocessing.DIHEDRAL, as the int8_tta8 model
  computes them), as functions of a batch [N, H, W, C]."""
  from pipeline import preprocessing  # pylint: disable=g-import-not-at-top
  return [functools.partial(preprocessing.dihedral_view_np, k=k, mirrored=mirrored)
          for k, mirrored in preprocessing.DIHEDRAL]


def centre_zoom(pixels: np.ndarray, fraction: float) -> np.ndarray:
  """The centre `fraction` of each side of a batch [N, H, W, C] of uint8 images, resized
  back to H x W with the bilinear filter images.load_rgb decodes with: a zoom in by
  1 / fraction, as RandomZoom's in training."""
  if fraction == 1.0:
    return pixels
  from PIL import Image  # pylint: disable=g-import-not-at-top
  h, w = pixels.shape[1:3]
  ch, cw = max(1, round(h * fraction)), max(1, round(w * fraction))
  y, x = (h - ch) // 2, (w - cw) // 2
  return np.stack([np.asarray(Image.fromarray(image).crop((x, y, x + cw, y + ch)).resize(
      (w, h), Image.BILINEAR)) for image in pixels])


def zoom_names(zooms: Sequence[float]) -> List[str]:
  """Row keys of the zoomed figures: each zoom (e.g. "0.875"), then "all" (every view)."""
  return [f"{z:g}" for z in zooms] + ["all"]


def parse_zooms(values: Sequence[str]) -> List[float]:
  """--tta_zooms as floats.

  Raises:
    PipelineError: a value that is not a fraction in (0, 1).
  """
  from pipeline.errors import PipelineError  # pylint: disable=g-import-not-at-top
  zooms = []
  for v in values:
    try:
      z = float(v)
    except ValueError:
      z = float("nan")
    if not 0 < z < 1:
      raise PipelineError(f"--tta_zooms: {v!r} is not a fraction in (0, 1); give the share of "
                          "each side to keep, e.g. --tta_zooms=0.875,0.75")
    zooms.append(z)
  return zooms


def _log(probs: np.ndarray) -> np.ndarray:
  return np.log(np.maximum(probs, 1e-12))


def _balanced(y_true: np.ndarray, probs: np.ndarray, offsets=None) -> float:
  """Balanced accuracy of argmax(log probs + offsets)."""
  from pipeline import metrics  # pylint: disable=g-import-not-at-top
  return metrics.argmax_balanced_accuracy(
      y_true, _log(probs) + (0.0 if offsets is None else offsets))


def score_rows(y_true: np.ndarray, plain: Dict[str, np.ndarray], tta: Dict[str, np.ndarray],
               fit: Optional[Dict[str, tuple]] = None,
               zoomed: Optional[Dict[str, Dict[str, np.ndarray]]] = None) -> List[dict]:
  """One row per model (plus the ensemble when there are several).

  Args:
    y_true: true classes of the scored split.
    plain: name -> probabilities [N, K] as shipped.
    tta: name -> probabilities averaged over the dihedral views.
    fit: optional name -> (y of the fit split, plain probs there, TTA probs there).
    zoomed: optional name -> {zoom_names key: probabilities averaged over those views}.

  Returns:
    JSON-ready rows of balanced accuracies (fractions).
  """
  from pipeline import metrics  # pylint: disable=g-import-not-at-top
  plain, tta, fit, zoomed = dict(plain), dict(tta), dict(fit or {}), dict(zoomed or {})
  if len(plain) > 1:
    plain[ENSEMBLE] = np.mean(list(plain.values()), axis=0)
    tta[ENSEMBLE] = np.mean(list(tta.values()), axis=0)
    if zoomed:
      zoomed[ENSEMBLE] = {k: np.mean([z[k] for z in zoomed.values()], axis=0)
                          for k in next(iter(zoomed.values()))}
    if fit:
      fit[ENSEMBLE] = (next(iter(fit.values()))[0],
                       np.mean([f[1] for f in fit.values()], axis=0),
                       np.mean([f[2] for f in fit.values()], axis=0))
  rows = []
  for name in plain:
    row = {"model": name, "balanced_accuracy": _balanced(y_true, plain[name]),
           "tta8": _balanced(y_true, tta[name])}
    for key, probs in (("oracle_offsets", plain[name]), ("tta8_oracle_offsets", tta[name])):
      row[key] = _balanced(y_true, probs, metrics.fit_class_offsets(y_true, _log(probs)))
    if name in fit:
      y_fit, plain_fit, tta_fit = fit[name]
      row["fit_split_offsets"] = _balanced(
          y_true, plain[name], metrics.fit_class_offsets(y_fit, _log(plain_fit)))
      row["tta8_fit_split_offsets"] = _balanced(
          y_true, tta[name], metrics.fit_class_offsets(y_fit, _log(tta_fit)))
    if name in zoomed:
      row["tta8_zooms"] = {k: _balanced(y_true, p) for k, p in zoomed[name].items()}
    rows.append(row)
  return rows


def run(models: List[str], dataset, split: str, fit_split: str, zooms: Sequence[float] = (),
        progress=common.progress) -> dict:
  """Scores every model (and their ensemble) plainly, with TTA (and at centre-crop `zooms`),
  and at tuned offsets."""
  from benchmarks.scoring import ScoringSet, display_names  # pylint: disable=g-import-not-at-top
  splits = [split] + ([fit_split] if fit_split else [])
  scoring = ScoringSet(models, dataset, splits)
  names = display_names(models)
  views = dihedral_views()
  probs = {s: {} for s in splits}  # split -> name -> (plain, tta)
  zoomed = {}  # name -> zoom_names key -> mean probabilities on `split`
  crops = {}  # (zoom, id of the images) -> centre crops: cropped once, seen in 8 views

  def crop(pixels: np.ndarray, zoom: float) -> np.ndarray:
    if (zoom, id(pixels)) not in crops:
      crops[zoom, id(pixels)] = centre_zoom(pixels, zoom)
    return crops[zoom, id(pixels)]

  for path in models:
    for s in splits:
      per_view = [scoring.probs(path, s, view) for view in views]
      probs[s][names[path]] = (per_view[0], np.mean(per_view, axis=0))
    if zooms:
      every = [probs[split][names[path]][1]]
      for z in zooms:
        every.append(np.mean([scoring.probs(path, split, lambda x, v=v, z=z: v(crop(x, z)))
                              for v in views], axis=0))
      zoomed[names[path]] = dict(zip(zoom_names(zooms), every[1:] + [np.mean(every, axis=0)]))
    progress(f"headroom: {names[path]}: {len(views) * (1 + len(zooms))} views of "
             f"{len(splits)} split(s) scored")
  fit = ({n: (scoring.y_true[fit_split], *probs[fit_split][n]) for n in probs[fit_split]}
         if fit_split else None)
  rows = score_rows(scoring.y_true[split], {n: p[0] for n, p in probs[split].items()},
                    {n: p[1] for n, p in probs[split].items()}, fit, zoomed)
  return {"split": split, "fit_split": fit_split or None, "zooms": list(zooms),
          "n": int(len(scoring.y_true[split])),
          "labels": scoring.labels, "models": {names[p]: p for p in models}, "rows": rows}


def markdown(payload: dict) -> List[str]:
  pct = lambda v: "n/a" if v is None else f"{100 * v:.1f}%"
  fit = payload["fit_split"]
  lines = ["# Headroom: balanced accuracy without training a better model", "",
           f"{payload['n']} images ({payload['split']}). TTA8: mean over the 8 dihedral views. "
           "Oracle offsets: per-class thresholds fit on this same split (uses its labels: an "
           "upper bound, not a result)." +
           (f" {fit} offsets: fit on the {fit} split, scored here (deployable)." if fit else ""),
           ""]
  head = ["model", "as shipped", "TTA8", "oracle offsets", "TTA8 + oracle offsets"]
  keys = ["balanced_accuracy", "tta8", "oracle_offsets", "tta8_oracle_offsets"]
  if fit:
    head += [f"{fit} offsets", f"TTA8 + {fit} offsets"]
    keys += ["fit_split_offsets", "tta8_fit_split_offsets"]
  zooms = payload.get("zooms") or []
  if zooms:
    lines[2] += (" TTA8 at z: the 8 views of the centre z of each side, zoomed back in; all "
                 f"views: mean over the {8 * (1 + len(zooms))} views.")
    head += [f"TTA8 at {k}" for k in zoom_names(zooms)[:-1]] + ["all views"]
  lines += ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
  for row in payload["rows"]:
    zoom_cells = [pct(row["tta8_zooms"][k]) for k in zoom_names(zooms)] if zooms else []
    lines.append(f"| {row['model']} | " + " | ".join(
        [pct(row.get(k)) for k in keys] + zoom_cells) + " |")
  return lines


def measure_from_flags() -> dict:
  from pipeline.errors import PipelineError  # pylint: disable=g-import-not-at-top
  dataset = common.dataset_from_flags(FLAGS)
  models = FLAGS.model or (common.exported_models(FLAGS.build_dir, ("int8", "float32"))
                           if FLAGS.build_dir else [])
  if not models:
    raise PipelineError("give at least one --model=PATH (.tflite or a build's .keras), or "
                        "--build_dir")
  if not dataset.split_file:
    raise PipelineError("give --build_dir (or --split_file=BUILD/splits.csv): headroom is "
                        "measured on one split of a build (usually test), never on its "
                        "training images")
  if FLAGS.fit_split == FLAGS.split:
    raise PipelineError(f"--fit_split={FLAGS.fit_split} is the scored split; use another "
                        "one (e.g. val), or leave it empty for the oracle bound only")
  return run(models, dataset, FLAGS.split, FLAGS.fit_split, parse_zooms(FLAGS.tta_zooms))


def main(argv: List[str]) -> None:
  common.main("benchmarks.headroom", argv, measure_from_flags, markdown, FLAGS.output_json,
              FLAGS.output_md)


if __name__ == "__main__":
  define_flags()
  app.run(main)
