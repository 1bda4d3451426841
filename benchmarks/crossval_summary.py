"""The summary of a cross-validation's finished folds (benchmarks/crossval.py runs them):
each variant's balanced accuracy over the folds, the same per source folder, and the referral
threshold on held-out lesions, as each fold fit it and fit on the other folds' scores."""

import json
import os
from typing import Dict, List

import numpy as np

from benchmarks import common
from benchmarks import crossval_paired as paired_lib
from benchmarks.common import interval
from pipeline.config.choices import STAGES

VARIANTS = paired_lib.VARIANTS
RECIPE_FILE = "recipe.json"  # What a cross-validation's folds were built with.
# The per-draw margin the summary prices against the default (the average over draws).
PER_DRAW_CONFIDENCE = 0.9


def finished(out: str) -> bool:
  path = os.path.join(out, "report.json")
  if not os.path.isfile(path):
    return False
  with open(path, encoding="utf-8") as f:
    return "gate" in json.load(f)


def out_of_fold_scores(fold_dir: str) -> dict:
  """The fold's shipped int8 model on its held-out lesions: probabilities, true classes and
  each image's source (the --data_dir folder it came from), and the serious-class truth and
  scores (None without serious classes)."""
  from pipeline import referral as referral_lib  # pylint: disable=g-import-not-at-top
  from pipeline.config import model_file_name  # pylint: disable=g-import-not-at-top
  from pipeline.runner import load_model_file  # pylint: disable=g-import-not-at-top
  # The validation share too: the fold's build fit its referral threshold on it.
  config, parts = common.build_splits(fold_dir, ("test", "val"))
  split, val = parts["test"], parts["val"]
  runner, meta = load_model_file(os.path.join(fold_dir, model_file_name("int8")))
  labels = list(meta["labels"])
  serious = list(config.referral.classes(config.data.data_format, labels))
  probs = runner.predict(split.pixels())
  y = np.asarray(split.labels)  # The build's labels.txt order, which its model embeds.
  out = {"scores": None, "serious": np.isin(np.asarray(labels)[y], serious), "probs": probs,
         "y": y, "source": np.array([_source(p, config.data.data_dir) for p in split.paths])}
  if serious:
    out["scores"] = referral_lib.serious_score(probs, labels, serious)
    out["val_scores"] = referral_lib.serious_score(runner.predict(val.pixels()), labels, serious)
    out["val_serious"] = np.isin(np.asarray(labels)[np.asarray(val.labels)], serious)
  return out


def _source(path: str, data_dirs: str) -> str:
  """The --data_dir folder holding `path`, by name (.../ham10000_extra/images: ham10000_extra)."""
  path = os.path.abspath(path)
  for d in data_dirs.split(","):
    d = os.path.abspath(d)
    if path.startswith(d + os.sep):
      name = os.path.basename(d)
      return os.path.basename(os.path.dirname(d)) if name in ("images", "img") else name
  return "other"


def per_source(oof: Dict[int, dict]) -> Dict[str, dict]:
  """int8 balanced accuracy on each source's held-out images: per fold, then over folds."""
  from pipeline import metrics  # pylint: disable=g-import-not-at-top
  out = {}
  for source in sorted({s for o in oof.values() for s in o["source"]}):
    picks = [(o, o["source"] == source) for o in oof.values()]
    out[source] = {"images": int(sum(m.sum() for _, m in picks)),
                   "balanced_accuracy": interval([
                       metrics.argmax_balanced_accuracy(o["y"][m], o["probs"][m])
                       for o, m in picks if m.any()])}
  return out


def cross_fit_referral(oof: Dict[int, dict], sensitivity: float) -> List[dict]:
  """Per fold: the threshold fit (conformal rank) on the other folds' out-of-fold serious
  scores, and what it refers of this fold's lesions."""
  from pipeline import referral as referral_lib  # pylint: disable=g-import-not-at-top
  rows = []
  for fold, mine in sorted(oof.items()):
    others = [o for f, o in oof.items() if f != fold]
    scores = np.concatenate([o["scores"] for o in others])
    serious = np.concatenate([o["serious"] for o in others])
    threshold = referral_lib.fit_threshold(scores, serious, sensitivity)
    point = referral_lib.operating_point(mine["scores"], mine["serious"], threshold)
    rows.append({"fold": fold, "threshold": threshold, "fit_on_serious": int(serious.sum()),
                 **point})
  return rows


def margin_referral(oof: Dict[int, dict], sensitivity: float,
                    confidence: float) -> List[dict]:
  """Per fold: the threshold the fold's build fits on its validation share with a per-draw
  margin (`--set=referral.confidence`), and what it refers of this fold's held-out lesions."""
  from pipeline import referral as referral_lib  # pylint: disable=g-import-not-at-top
  rows = []
  for fold, o in sorted(oof.items()):
    threshold = referral_lib.fit_threshold(o["val_scores"], o["val_serious"], sensitivity,
                                           confidence)
    rows.append({"fold": fold, "threshold": threshold,
                 **referral_lib.operating_point(o["scores"], o["serious"], threshold)})
  return rows


def fold_reports(work_dir: str, folds: int) -> Dict[int, dict]:
  """{fold: report.json} of WORK_DIR's finished folds."""
  reports = {}
  for i in range(folds):
    out = os.path.join(work_dir, f"fold_{i}")
    if finished(out):
      with open(os.path.join(out, "report.json"), encoding="utf-8") as f:
        reports[i] = json.load(f)
  return reports


def check_one_recipe(work_dir: str, reports: Dict[int, dict]) -> None:
  """Every fold must have been built with the same recipe but for its split file: the
  flagfile's text alone does not pin it (a default may change between two runs' code).

  Raises:
    PipelineError: two folds whose recipes differ.
  """
  from pipeline.config import readers  # pylint: disable=g-import-not-at-top
  from pipeline.errors import PipelineError  # pylint: disable=g-import-not-at-top
  first, *others = sorted(reports)
  want = reports[first].get("config", {})
  for i in others:
    got = reports[i].get("config", {})
    changed = [p for p in readers.changed_settings(want, got) if p != "data.split_file"]
    if changed:
      path = changed[0]
      raise PipelineError(
          f"{work_dir}: fold {i} was built with another recipe than fold {first} ({path}: "
          f"{readers.setting(got, path)!r} against {readers.setting(want, path)!r}); rebuild it "
          f"(delete fold_{i}) or give another --work_dir")


def _recipe(work_dir: str) -> dict:
  from pipeline import atomic  # pylint: disable=g-import-not-at-top
  path = os.path.join(work_dir, RECIPE_FILE)
  return atomic.read_json(path, "the cross-validation recipe") if os.path.isfile(path) else {}


def summarise(work_dir: str, folds: int, rescore: bool = True, compare_to: str = "") -> dict:
  """The finished folds' figures (see the module docstring); `rescore` runs each fold's int8
  model on its held-out lesions again, for the figures per source and the cross-fit referral
  (False: the folds' reports alone); `compare_to`, another cross-validation of the same folds,
  adds the paired differences from it."""
  from pipeline.errors import PipelineError  # pylint: disable=g-import-not-at-top
  reports = fold_reports(work_dir, folds)
  if not reports:
    raise PipelineError(f"{work_dir}: no finished fold yet; run without --norun")
  check_one_recipe(work_dir, reports)
  variants = [v for v in VARIANTS if all(v in r["models"] for r in reports.values())]
  # Folds copied from another cross-validation redid only the stages from --rerun_from on.
  start = (_recipe(work_dir).get("start") or {}).get("rerun_from")
  redone = STAGES[STAGES.index(start):] if start else STAGES
  payload = {"folds": folds, "finished": sorted(reports), "variants": {},
             "redone_from": start or None}
  for v in variants:
    payload["variants"][v] = {
        m: interval([r["models"][v][m] for r in reports.values()])
        for m in ("balanced_accuracy", "accuracy")}
  payload["per_fold"] = [{
      "fold": i, "held_out": reports[i]["data"]["totals"]["test"],
      "balanced_accuracy": {v: reports[i]["models"][v]["balanced_accuracy"] for v in variants},
      "gate_passed": reports[i]["gate"]["passed"],
      "minutes": sum(t for s, t in reports[i]["stage_seconds"].items() if s in redone) / 60,
      "stage_seconds": reports[i]["stage_seconds"],
      "referral_own": (reports[i].get("referral") or {}).get("test", {}).get("int8")}
      for i in sorted(reports)]
  if compare_to:
    payload["compare_to"] = os.path.abspath(compare_to)
    payload["paired"] = paired_lib.compare(
        work_dir, compare_to, reports, fold_reports(compare_to, folds), rescore, redone)
  target = next((r["referral"]["target_sensitivity"] for r in reports.values()
                 if r.get("referral")), None)
  if not rescore:
    return payload
  common.progress("scoring each fold's int8 model on its held-out lesions ...")
  oof = {i: out_of_fold_scores(os.path.join(work_dir, f"fold_{i}")) for i in reports}
  payload["sources"] = per_source(oof)
  if target and len(reports) > 1:
    rows = cross_fit_referral(oof, target)
    payload["referral"] = {"target_sensitivity": target, "cross_fit": rows,
                           "sensitivity": interval([r["sensitivity"] for r in rows]),
                           "specificity": interval([r["specificity"] for r in rows]),
                           "own_sensitivity": interval([p["referral_own"]["sensitivity"]
                                                        for p in payload["per_fold"]]),
                           "own_specificity": interval([p["referral_own"]["specificity"]
                                                        for p in payload["per_fold"]])}
    margin = margin_referral(oof, target, PER_DRAW_CONFIDENCE)
    payload["referral"]["per_draw"] = {
        "confidence": PER_DRAW_CONFIDENCE, "folds": margin,
        "sensitivity": interval([r["sensitivity"] for r in margin]),
        "specificity": interval([r["specificity"] for r in margin])}
  return payload


def markdown(payload: dict) -> List[str]:
  pct = lambda s: (f"{100 * s['mean']:.1f}% ({100 * s['min']:.1f}-{100 * s['max']:.1f})" +
                   (f", 95% CI {100 * s['ci95'][0]:.1f}-{100 * s['ci95'][1]:.1f}"
                    if s["ci95"] else ""))
  lines = [f"# Cross-validation: {len(payload['finished'])} of {payload['folds']} folds", "",
           "Each fold's build scored its held-out lesions (never the recipe's test split).", "",
           "| variant | balanced accuracy, mean (min-max), 95% CI | accuracy |", "|---|---|---|"]
  for v, s in payload["variants"].items():
    lines.append(f"| {v} | {pct(s['balanced_accuracy'])} | {pct(s['accuracy'])} |")
  if payload.get("plot"):
    lines += ["", f"![per fold]({os.path.basename(payload['plot'])})"]
  lines += ["", "| fold | held-out images | " + " | ".join(payload["variants"]) +
            " | gate | referral sensitivity / specificity (own threshold) | " +
            (f"minutes (redone from {payload['redone_from']})" if payload.get("redone_from")
             else "minutes") + " |",
            "|---|---:|" + "---:|" * len(payload["variants"]) + "---|---|---:|"]
  for p in payload["per_fold"]:
    own = p["referral_own"]
    referral = (f"{100 * own['sensitivity']:.1f}% / {100 * own['specificity']:.1f}% of "
                f"{own['positives']} serious" if own else "n/a")
    lines.append(f"| {p['fold']} | {p['held_out']} | " + " | ".join(
        f"{100 * b:.1f}%" for b in p["balanced_accuracy"].values()) +
        f" | {'passed' if p['gate_passed'] else 'FAILED'} | {referral} | {p['minutes']:.1f} |")
  if len(payload.get("sources", {})) > 1:
    lines += ["", "int8 balanced accuracy by the folder the held-out images came from:", "",
              "| source | held-out images | balanced accuracy, mean (min-max), 95% CI |",
              "|---|---:|---|"]
    lines += [f"| {name} | {s['images']} | {pct(s['balanced_accuracy'])} |"
              for name, s in payload["sources"].items()]
  lines += paired_lib.markdown(payload)
  r = payload.get("referral")
  if r:
    lines += ["", f"Referral at {r['target_sensitivity']:.0%} target sensitivity, on each fold's "
              "held-out lesions:", "",
              f"- fit by the fold's build on its validation share: sensitivity "
              f"{pct(r['own_sensitivity'])}, specificity {pct(r['own_specificity'])};",
              f"- fit on the other folds' out-of-fold scores: sensitivity "
              f"{pct(r['sensitivity'])}, specificity {pct(r['specificity'])};",
              f"- fit on the same validation share with a per-draw margin "
              f"(`--set=referral.confidence={r['per_draw']['confidence']:g}`): sensitivity "
              f"{pct(r['per_draw']['sensitivity'])}, specificity "
              f"{pct(r['per_draw']['specificity'])}."]
  return lines

