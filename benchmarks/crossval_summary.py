"""The summary of a cross-validation's finished folds (benchmarks/crossval.py runs them):
each variant's balanced accuracy over the folds, the same per source folder, and the referral
threshold on held-out lesions, as each fold fit it and fit on the other folds' scores."""

import json
import os
from typing import Dict, List

import numpy as np

from benchmarks import common
from pipeline.config.choices import STAGES

VARIANTS = ("float32", "int8", "int8_tta8")
RECIPE_FILE = "recipe.json"  # What a cross-validation's folds were built with.


def finished(out: str) -> bool:
  path = os.path.join(out, "report.json")
  if not os.path.isfile(path):
    return False
  with open(path, encoding="utf-8") as f:
    return "gate" in json.load(f)


def interval(values: List[float], bounds=(0.0, 1.0)) -> dict:
  """Mean, min-max and the 95% t-interval of the mean over folds (None with one fold), the
  interval clipped to `bounds` (a share by default; None for a difference)."""
  from scipy import stats  # pylint: disable=g-import-not-at-top
  v = np.asarray(values, float)
  ci = None
  if len(v) > 1 and np.ptp(v) == 0:
    ci = [float(v[0])] * 2  # Equal folds: the t-interval has zero width.
  elif len(v) > 1:
    ci = [float(np.clip(x, *bounds) if bounds else x)
          for x in stats.t.interval(0.95, len(v) - 1, loc=v.mean(), scale=stats.sem(v))]
  return {"mean": float(v.mean()), "min": float(v.min()), "max": float(v.max()), "ci95": ci,
          "folds": len(v)}


def out_of_fold_scores(fold_dir: str) -> dict:
  """The fold's shipped int8 model on its held-out lesions: probabilities, true classes and
  each image's source (the --data_dir folder it came from), and the serious-class truth and
  scores (None without serious classes)."""
  from pipeline import referral as referral_lib  # pylint: disable=g-import-not-at-top
  from pipeline.config import model_file_name  # pylint: disable=g-import-not-at-top
  from pipeline.runner import load_model_file  # pylint: disable=g-import-not-at-top
  config, split = common.build_split(fold_dir, "test")
  runner, meta = load_model_file(os.path.join(fold_dir, model_file_name("int8")))
  labels = list(meta["labels"])
  serious = list(config.referral.classes(config.data.data_format, labels))
  probs = runner.predict(split.pixels())
  y = np.asarray(split.labels)  # The build's labels.txt order, which its model embeds.
  truth = np.isin(np.asarray(labels)[y], serious)
  return {"scores": referral_lib.serious_score(probs, labels, serious) if serious else None,
          "serious": truth, "probs": probs, "y": y,
          "source": np.array([_source(p, config.data.data_dir) for p in split.paths])}


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


def fold_reports(work_dir: str, folds: int) -> Dict[int, dict]:
  """{fold: report.json} of WORK_DIR's finished folds."""
  reports = {}
  for i in range(folds):
    out = os.path.join(work_dir, f"fold_{i}")
    if finished(out):
      with open(os.path.join(out, "report.json"), encoding="utf-8") as f:
        reports[i] = json.load(f)
  return reports


def _settings(config: dict, prefix: str = "") -> Dict[str, object]:
  out = {}
  for key, value in config.items():
    if isinstance(value, dict):
      out.update(_settings(value, f"{prefix}{key}."))
    else:
      out[prefix + key] = value
  return out


def check_one_recipe(work_dir: str, reports: Dict[int, dict]) -> None:
  """Every fold must have been built with the same recipe but for its split file: the
  flagfile's text alone does not pin it (a default may change between two runs' code).

  Raises:
    PipelineError: two folds whose recipes differ.
  """
  from pipeline.errors import PipelineError  # pylint: disable=g-import-not-at-top
  first, *others = sorted(reports)
  want = _settings(reports[first].get("config", {}))
  for i in others:
    got = _settings(reports[i].get("config", {}))
    changed = sorted(k for k in set(want) | set(got)
                     if k != "data.split_file" and want.get(k) != got.get(k))
    if changed:
      raise PipelineError(
          f"{work_dir}: fold {i} was built with another recipe than fold {first} ({changed[0]}: "
          f"{got.get(changed[0])!r} against {want.get(changed[0])!r}); rebuild it (delete "
          f"fold_{i}) or give another --work_dir")


def check_same_folds(work_dir: str, other: str, folds: List[int]) -> None:
  """A paired comparison needs each fold to hold out the same images on both sides.

  Raises:
    PipelineError: a fold of the two whose splits.csv differ.
  """
  from pipeline.errors import PipelineError  # pylint: disable=g-import-not-at-top
  for i in folds:
    texts = []
    for d in (work_dir, other):
      with open(os.path.join(d, f"fold_{i}", "splits.csv"), encoding="utf-8") as f:
        texts.append(f.read())
    if texts[0] != texts[1]:
      raise PipelineError(f"--compare_to={other}: fold {i} splits the images differently from "
                          f"{work_dir}'s; compare cross-validations of the same data, seed and "
                          "--folds")


def _recipe(work_dir: str) -> dict:
  path = os.path.join(work_dir, RECIPE_FILE)
  if not os.path.isfile(path):
    return {}
  with open(path, encoding="utf-8") as f:
    return json.load(f)


# What a paired comparison gives per fold: (name, figure of a report).
PAIRED_FIGURES = tuple(
    (f"{v} balanced accuracy", lambda r, v=v: r["models"][v]["balanced_accuracy"])
    for v in VARIANTS) + (
    ("int8 top-1 agreement with float32", lambda r: r["models"]["int8"]["top1_agreement"]),
    ("int8 flips", lambda r: r["models"]["int8"]["disagreements"]))


def paired(reports: Dict[int, dict], base: Dict[int, dict], stages=STAGES) -> dict:
  """Each figure of PAIRED_FIGURES and the seconds of each of `stages` (those taking a second
  or more), on the folds both cross-validations finished: per fold (base, this) and the
  difference over folds."""
  folds = sorted(set(reports) & set(base))
  out = {"folds": folds, "figures": {}, "stage_seconds": {}, "gate_passed": {
      i: [base[i]["gate"]["passed"], reports[i]["gate"]["passed"]] for i in folds}}
  for name, figure in PAIRED_FIGURES:
    try:
      pairs = {i: [figure(base[i]), figure(reports[i])] for i in folds}
    except KeyError:  # A variant one side did not build.
      continue
    out["figures"][name] = {"per_fold": pairs, "difference": interval(
        [b - a for a, b in pairs.values()], bounds=None) if folds else None}
  for stage in stages:
    pairs = {i: [base[i]["stage_seconds"].get(stage), reports[i]["stage_seconds"].get(stage)]
             for i in folds}
    if folds and all(None not in p for p in pairs.values()) and max(map(max, pairs.values())) >= 1:
      out["stage_seconds"][stage] = pairs
  return out


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
  payload = {"folds": folds, "finished": sorted(reports), "variants": {}}
  for v in variants:
    payload["variants"][v] = {
        m: interval([r["models"][v][m] for r in reports.values()])
        for m in ("balanced_accuracy", "accuracy")}
  payload["per_fold"] = [{
      "fold": i, "held_out": reports[i]["data"]["totals"]["test"],
      "balanced_accuracy": {v: reports[i]["models"][v]["balanced_accuracy"] for v in variants},
      "gate_passed": reports[i]["gate"]["passed"],
      "minutes": sum(reports[i]["stage_seconds"].values()) / 60,
      "stage_seconds": reports[i]["stage_seconds"],
      "referral_own": (reports[i].get("referral") or {}).get("test", {}).get("int8")}
      for i in sorted(reports)]
  if compare_to:
    payload["compare_to"] = os.path.abspath(compare_to)
    # Folds copied from another cross-validation redid only the stages from --rerun_from on.
    start = (_recipe(work_dir).get("start") or {}).get("rerun_from")
    base = fold_reports(compare_to, folds)
    check_same_folds(work_dir, compare_to, sorted(set(reports) & set(base)))
    payload["paired"] = paired(reports, base,
                               STAGES[STAGES.index(start):] if start else STAGES)
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
                                                        for p in payload["per_fold"]])}
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
  lines += ["", "| fold | held-out images | " + " | ".join(payload["variants"]) +
            " | gate | referral sensitivity / specificity (own threshold) | minutes |",
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
  lines += paired_markdown(payload)
  r = payload.get("referral")
  if r:
    lines += ["", f"Referral at {r['target_sensitivity']:.0%} target sensitivity, on each fold's "
              "held-out lesions:", "",
              f"- fit by the fold's build on its validation share: sensitivity "
              f"{pct(r['own_sensitivity'])};",
              f"- fit on the other folds' out-of-fold scores: sensitivity "
              f"{pct(r['sensitivity'])}, specificity {pct(r['specificity'])}."]
  return lines


def paired_markdown(payload: dict) -> List[str]:
  p = payload.get("paired")
  if not p:
    return []
  if not p["folds"]:
    return ["", f"No fold finished in both this and {payload['compare_to']} yet."]
  folds = p["folds"]
  lines = ["", f"Paired with {payload['compare_to']} (base), on folds "
           f"{', '.join(map(str, folds))}: base / this per fold; the difference this - base "
           "as mean (min-max), 95% CI.", "",
           "| figure | " + " | ".join(f"fold {i}" for i in folds) + " | difference |",
           "|---|" + "---:|" * (len(folds) + 1)]
  for name, f in p["figures"].items():
    scale, unit = (1, "") if name.endswith("flips") else (100, " points")
    fmt = (lambda x: f"{x:.0f}") if scale == 1 else (lambda x: f"{100 * x:.1f}%")
    d = f["difference"]
    diff = f"{scale * d['mean']:+.1f}{unit} ({scale * d['min']:+.1f} to {scale * d['max']:+.1f})"
    if d["ci95"]:
      diff += f", {scale * d['ci95'][0]:+.1f} to {scale * d['ci95'][1]:+.1f}"
    lines.append(f"| {name} | " + " | ".join(
        f"{fmt(f['per_fold'][i][0])} / {fmt(f['per_fold'][i][1])}" for i in folds) +
        f" | {diff} |")
  lines.append("| parity gate | " + " | ".join(
      "/".join("passed" if g else "FAILED" for g in p["gate_passed"][i]) for i in folds) + " | |")
  for stage, pairs in p["stage_seconds"].items():
    ratio = sum(b for _, b in pairs.values()) / max(sum(a for a, _ in pairs.values()), 1e-9)
    lines.append(f"| {stage} seconds | " + " | ".join(
        f"{pairs[i][0]:.0f} / {pairs[i][1]:.0f}" for i in folds) + f" | x{ratio:.2f} |")
  return lines
