r"""The learning curve: what more training lesions buy, read from cross-validations of the
same folds that differ only in how many training lesions each fold's build kept.

  python -m benchmarks.crossval --build_flagfile=configs/ham10000.flags --folds=5 \
      --build_flag=--set=data.train_fraction=0.5 --work_dir=build/crossval_half
  python -m benchmarks.learning_curve --work_dir=build/crossval_half \
      --work_dir=build/crossval --target=int8:0.72 --target=int8_tta8:0.75

Each fold holds out the same lesions at every size, so the curve is paired by fold: the gain
per doubling of the training lesions is fit per fold (least squares on log2 of its training
lesions) and then averaged over the folds, with a 95% t-interval; with three or more sizes it
is also given per step, which shows whether the gains shrink. A target is priced from the
largest size's mean at the rate of the top step (between the two largest sizes): how many
doublings, and so how many training lesions, it would take if the curve kept that slope (an
extrapolation, not a measurement; a curve that flattens needs more). JSON,
Markdown and a plot (`<output_json stem>.png`).
"""

import itertools
import os
from typing import Dict, List

import numpy as np

from benchmarks import common
from benchmarks import crossval_paired as paired_lib
from benchmarks import crossval_summary as summary_lib
from benchmarks.common import interval


def _train_lesions(fold_dir: str) -> int:
  """Distinct lesions (groups) the fold's build trained on, from its splits.csv."""
  from pipeline.data import splits as splits_lib  # pylint: disable=g-import-not-at-top
  from pipeline.data.readers import read_csv  # pylint: disable=g-import-not-at-top
  rows, _ = read_csv(os.path.join(fold_dir, splits_lib.FILE_NAME), ("key", "group", "split"))
  return len({r["group"] for r in rows if r["split"] == "train"})


def sizes(work_dirs: List[str], folds: int) -> List[dict]:
  """Each cross-validation's finished folds: training lesions and images and each variant's
  balanced accuracy, smallest size first.

  Raises:
    PipelineError: fewer than two sizes with finished folds, or folds that hold out other
      images than the same fold of another size.
  """
  from pipeline.errors import PipelineError  # pylint: disable=g-import-not-at-top
  out = []
  for work_dir in work_dirs:
    reports = summary_lib.fold_reports(work_dir, folds)
    if not reports:
      raise PipelineError(f"--work_dir={work_dir}: no finished fold; run benchmarks.crossval "
                          "on it first")
    summary_lib.check_one_recipe(work_dir, reports)
    out.append({"work_dir": work_dir, "per_fold": {i: {
        "train_lesions": _train_lesions(os.path.join(work_dir, f"fold_{i}")),
        "train_images": r["data"]["totals"]["train"],
        "balanced_accuracy": {v: r["models"][v]["balanced_accuracy"]
                              for v in paired_lib.VARIANTS if v in r["models"]}}
        for i, r in sorted(reports.items())}})
  if len(out) < 2:
    raise PipelineError("a learning curve needs two or more --work_dir of the same folds at "
                        "different training fractions")
  for a, b in itertools.combinations(out, 2):
    shared = sorted(set(a["per_fold"]) & set(b["per_fold"]))
    paired_lib.check_same_folds(a["work_dir"], b["work_dir"], shared)
  for s in out:
    s["train_lesions"] = interval([f["train_lesions"] for f in s["per_fold"].values()],
                                  bounds=None)
  out.sort(key=lambda s: s["train_lesions"]["mean"])
  for a, b in zip(out, out[1:]):
    if round(a["train_lesions"]["mean"]) == round(b["train_lesions"]["mean"]):
      raise PipelineError(f"--work_dir={a['work_dir']} and --work_dir={b['work_dir']} train on "
                          "the same number of lesions; give cross-validations at different "
                          "training fractions")
  return out


def _fold_points(curve: List[dict], variant: str) -> Dict[int, Dict[int, tuple]]:
  """{fold: {size index: (log2 training lesions, balanced accuracy)}}."""
  points: Dict[int, Dict[int, tuple]] = {}
  for k, s in enumerate(curve):
    for i, f in s["per_fold"].items():
      if variant in f["balanced_accuracy"]:
        points.setdefault(i, {})[k] = (np.log2(f["train_lesions"]),
                                       f["balanced_accuracy"][variant])
  return points


def per_doubling(curve: List[dict], variant: str) -> dict:
  """The variant's gain in balanced accuracy per doubling of the training lesions: the
  least-squares slope of each fold over the sizes it has (two or more), then over those
  folds; and per step between neighbouring sizes, over the folds that have both."""
  points = _fold_points(curve, variant)
  slopes = {i: float(np.polyfit(*zip(*p.values()), 1)[0]) for i, p in points.items()
            if len(p) > 1}
  steps = []
  for k in range(len(curve) - 1):
    pairs = [(p[k], p[k + 1]) for p in points.values() if k in p and k + 1 in p]
    if pairs:
      steps.append({"from": curve[k]["work_dir"], "to": curve[k + 1]["work_dir"],
                    "gain": interval([(b1 - a1) / (b0 - a0) for (a0, a1), (b0, b1) in pairs],
                                     bounds=None)})
  return {"per_fold": slopes, "gain": interval(list(slopes.values()), bounds=None)
          if slopes else None, "steps": steps}


def price(mean: float, lesions: float, gain: dict, target: float) -> dict:
  """What reaching `target` from `mean` at `lesions` training lesions would take at the
  fitted gain per doubling (and at the ends of its 95% interval): doublings, the factor on
  today's training lesions and the lesions. An end at no gain or a loss prices as never."""
  need = target - mean
  def factor(rate):
    if need <= 0:
      return 1.0
    return float(2 ** (need / rate)) if rate and rate > 0 else None
  ci = gain["ci95"] or [gain["mean"], gain["mean"]]
  f = factor(gain["mean"])
  return {"target": target, "from": mean, "points_short": max(need, 0.0),
          "doublings": None if f is None else float(np.log2(f)), "factor": f,
          "factor_ci95": [factor(ci[1]), factor(ci[0])],
          "lesions": None if f is None else float(lesions * f)}


def summarise(work_dirs: List[str], folds: int, targets: Dict[str, float]) -> dict:
  """The curve (see the module docstring) and each target's price.

  Raises:
    PipelineError: as `sizes`, or a target for a variant the folds did not build.
  """
  from pipeline.errors import PipelineError  # pylint: disable=g-import-not-at-top
  curve = sizes(work_dirs, folds)
  payload = {"folds": folds, "sizes": curve, "variants": {}}
  for v in paired_lib.VARIANTS:
    figures = [[f["balanced_accuracy"][v] for f in s["per_fold"].values()
                if v in f["balanced_accuracy"]] for s in curve]
    if all(figures):  # A variant every size built.
      payload["variants"][v] = {"per_size": [interval(f) for f in figures],
                                **per_doubling(curve, v)}
  for v, target in targets.items():
    if v not in payload["variants"]:
      raise PipelineError(f"--target={v}:{target}: the folds did not build {v}; give one of "
                          f"{', '.join(payload['variants'])}")
    got = payload["variants"][v]
    last = got["steps"][-1] if got["steps"] else None
    if not last or last["to"] != curve[-1]["work_dir"]:
      raise PipelineError(f"--target={v}:{target}: no fold finished at both of the two largest "
                          "sizes yet")
    # Priced at the top step's rate: where the curve is now, not its average since the start.
    got["target"] = price(got["per_size"][-1]["mean"], curve[-1]["train_lesions"]["mean"],
                          last["gain"], target)
  return payload


def _pct(x: float) -> str:
  return f"{100 * x:.1f}%"


def _factor(f) -> str:
  """A factor on the training lesions; past 100x (or never) the figure says only that."""
  return "no end" if f is None else "over 100x" if f > 100 else f"{f:.1f}x"


def markdown(payload: dict) -> List[str]:
  curve, variants = payload["sizes"], payload["variants"]
  lines = ["Balanced accuracy on the same held-out lesions at each training size: mean over "
           "the folds finished there (95% CI).", "",
           "| cross-validation | training lesions per fold | training images | folds | " +
           " | ".join(variants) + " |", "|---|---:|---:|---:|" + "---:|" * len(variants)]
  for k, s in enumerate(curve):
    f = list(s["per_fold"].values())
    cells = []
    for v in variants:
      m = variants[v]["per_size"][k]
      ci = f" ({100 * m['ci95'][0]:.1f}-{100 * m['ci95'][1]:.1f})" if m["ci95"] else ""
      cells.append(_pct(m["mean"]) + ci)
    lines.append(f"| {s['work_dir']} | {s['train_lesions']['mean']:.0f} | "
                 f"{np.mean([x['train_images'] for x in f]):.0f} | {len(f)} | " +
                 " | ".join(cells) + " |")
  lines += ["", "Gain per doubling of the training lesions, in points: per fold, then the mean "
            "(min to max), 95% CI.", ""]
  points = lambda d: (f"{100 * d['mean']:+.1f} ({100 * d['min']:+.1f} to {100 * d['max']:+.1f})"
                      + (f", {100 * d['ci95'][0]:+.1f} to {100 * d['ci95'][1]:+.1f}"
                         if d["ci95"] else ""))
  for v, got in variants.items():
    if got["gain"] is None:
      continue
    lines.append(f"- {v}: {points(got['gain'])} over {got['gain']['folds']} folds" + "".join(
        f"; {os.path.basename(st['from'])} to {os.path.basename(st['to'])} "
        f"{points(st['gain'])}" for st in got["steps"] if len(got["steps"]) > 1))
  for v, got in variants.items():
    t = got.get("target")
    if not t:
      continue
    if t["points_short"] == 0:
      lines.append(f"- {v} {_pct(t['target'])}: reached ({_pct(t['from'])}).")
      continue
    if t["factor"] is None:
      lines.append(f"- {v} {_pct(t['target'])}: {100 * t['points_short']:.1f} points short, and "
                   "the curve shows no gain per doubling to reach it with.")
      continue
    lo, hi = t["factor_ci95"]
    lines.append(
        f"- {v} {_pct(t['target'])}: {100 * t['points_short']:.1f} points short of "
        f"{_pct(t['from'])}; at the top step's gain, {t['doublings']:.1f} doublings: about "
        f"{t['factor']:.1f}x the training lesions ({t['lesions']:.0f}; over the gain's 95% CI "
        f"{lo:.1f}x to {_factor(hi)}), if the curve kept that slope.")
  return lines


def figure(payload: dict):
  """Per variant: each fold's curve (thin), the mean at each size with its 95% interval, and
  the mean rate carried on to each target (dashed: an extrapolation)."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, ax = plt.subplots(figsize=(7, 4.5))
  x = [s["train_lesions"]["mean"] for s in payload["sizes"]]
  for j, (v, got) in enumerate(payload["variants"].items()):
    nudge = 1 + 0.015 * (j - 1)  # Side by side at each size, not on top of each other.
    means = [100 * m["mean"] for m in got["per_size"]]
    err = [[100 * (m["mean"] - m["ci95"][0]) if m["ci95"] else 0 for m in got["per_size"]],
           [100 * (m["ci95"][1] - m["mean"]) if m["ci95"] else 0 for m in got["per_size"]]]
    line = ax.errorbar([a * nudge for a in x], means, yerr=err, marker="o", capsize=3, label=v + (
        f": {100 * got['gain']['mean']:+.1f} points per doubling" if got["gain"] else ""))
    color = line[0].get_color()
    for i in got["per_fold"]:
      fold = [(s["per_fold"][i]["train_lesions"], 100 * s["per_fold"][i]["balanced_accuracy"][v])
              for s in payload["sizes"] if i in s["per_fold"]]
      ax.plot(*zip(*fold), color=color, lw=0.7, alpha=0.3)
    t = got.get("target")
    if t and t["lesions"]:
      ax.plot([x[-1], t["lesions"]], [means[-1], 100 * t["target"]], ls="--", color=color)
      ax.axhline(100 * t["target"], color=color, ls=":", lw=1)
  ax.set_xscale("log", base=2)
  ax.set_xticks(x, [f"{a:.0f}" for a in x])
  ax.minorticks_off()
  ax.set(title="balanced accuracy on held-out lesions against training lesions",
         xlabel="training lesions per fold (log scale)", ylabel="%")
  ax.legend(fontsize=8)
  fig.tight_layout()
  return fig


def _targets(values: List[str]) -> Dict[str, float]:
  from pipeline.errors import PipelineError  # pylint: disable=g-import-not-at-top
  out = {}
  for value in values:
    variant, _, share = value.partition(":")
    try:
      out[variant] = float(share)
    except ValueError:
      out[variant] = -1.0
    if not 0 < out[variant] < 1:
      raise PipelineError(f"--target={value}: give VARIANT:SHARE, e.g. int8:0.72")
  return out


def define_flags() -> None:
  from absl import flags  # pylint: disable=g-import-not-at-top
  flags.DEFINE_multi_string("work_dir", [], "A cross-validation (benchmarks.crossval "
                            "--work_dir) of the same folds at one training fraction; two or "
                            "more.")
  flags.DEFINE_integer("folds", 5, "Number of folds (k) of the cross-validations.",
                       lower_bound=2)
  flags.DEFINE_multi_string("target", [], "VARIANT:SHARE to price, e.g. int8:0.72 "
                            "(repeatable).")
  flags.DEFINE_string("output_json", "build/learning_curve.json", "JSON report; the Markdown "
                      "and the plot go beside it.")


def main(argv: List[str]) -> None:
  from absl import flags  # pylint: disable=g-import-not-at-top
  values = flags.FLAGS

  def measure() -> dict:
    payload = summarise(values.work_dir, values.folds, _targets(values.target))
    payload["plot"] = os.path.splitext(values.output_json)[0] + ".png"
    common.save_plot(figure(payload), payload["plot"])
    return payload

  common.main("benchmarks.learning_curve", argv, measure, markdown, values.output_json, "")


if __name__ == "__main__":
  from absl import app  # pylint: disable=g-import-not-at-top
  define_flags()
  app.run(main)
