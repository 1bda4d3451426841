r"""Learning curve: how much would more training lesions buy, at this recipe?

The given --build_dir builds (finished builds of one recipe on one split) are the points at
the whole training split. For each of --fractions, the first build's recipe is re-run
--draws times through the crt stage (its config.json with --split_file=BUILD/splits.csv
--train_fraction=F --seed=SEED+d --stop_after=crt, in this process): the same
validation and test images, that share of each class's training lesions drawn anew for each
draw (d = 1, 2, ...), and the recipe's own epochs (fewer steps on fewer images, as the
recipe would run on a smaller dataset). Every float model (after cRT) is scored on the test
split with one view and with the mean over the 8 dihedral views (the int8_tta8 variant's
input), and on validation.

A least-squares line of test balanced accuracy against log2(training images), over every
model and over the last doubling alone (fractions >= 0.5), gives the gain per doubling of
the data and where the line reaches each of --targets: how many times today's training
lesions it would take, if the line held that far (an extrapolation: learning curves
flatten). The builds must share the first one's test split. Writes JSON, Markdown and a
plot; the re-runs live in --work_dir and are resumed or reused (when they ran the same
recipe) when the command is run again.

  python -m benchmarks.learning_curve --build_dir=/work/runs/sq1 --build_dir=/work/runs/sq2 \
      --fractions=0.25,0.5 --draws=3 --output_json=learning_curve.json
"""

import dataclasses
import os
from typing import Dict, List, Sequence

import numpy as np
from absl import app
from absl import flags

from benchmarks import common
from benchmarks import readout

FLAGS = flags.FLAGS
VIEWS = ("test", "test_tta8")  # The figures the line is fit to, one line each.


def define_flags() -> None:
  """Defined when run, not on import (see benchmarks.readout)."""
  flags.DEFINE_multi_string("build_dir", [], "A finished build of the recipe (repeatable, on "
                            "one split; the first one's config.json and splits.csv are re-run).")
  flags.DEFINE_list("fractions", ["0.25", "0.5"], "Shares of each class's training lesions "
                    "to re-run the recipe on, each in (0, 1).")
  flags.DEFINE_integer("draws", 3, "Re-runs per fraction, each with its own lesions, data "
                       "order and augmentation.", lower_bound=1)
  flags.DEFINE_list("targets", ["0.72", "0.75"], "Test balanced accuracies to extrapolate to.")
  flags.DEFINE_string("work_dir", "", "The re-runs' build directories (default: "
                      "learning_curve_work/ beside --output_json).")
  flags.DEFINE_string("output_json", "learning_curve.json", "JSON report path.")
  flags.DEFINE_string("output_md", "", "Markdown report path (default: beside the JSON).")


def rerun(build_dir: str, fraction: float, draw: int, out_dir: str) -> str:
  """Runs the build's recipe (its config.json) through crt on `fraction` of its training
  lesions with seed + `draw`, on its splits.csv, in `out_dir`; a finished re-run is reused,
  an interrupted one resumed. (A synthetic set is generated anew from that seed: the same
  image names, other pixels.)"""
  from pipeline import atomic, stages  # pylint: disable=g-import-not-at-top
  from pipeline import config as config_lib  # pylint: disable=g-import-not-at-top
  from pipeline.errors import PipelineError  # pylint: disable=g-import-not-at-top
  from pipeline.tf_compat import keras  # pylint: disable=g-import-not-at-top
  config = config_lib.BuildConfig.load(os.path.join(build_dir, config_lib.CONFIG_FILE))
  data = dataclasses.replace(config.data, train_fraction=fraction,
                             split_file=os.path.join(build_dir, "splits.csv"))
  recipe = dataclasses.replace(config, seed=config.seed + draw, data=data).validate()
  state_path = os.path.join(out_dir, "build_state.json")
  started = os.path.exists(state_path)
  if started and "crt" in atomic.read_json(state_path, "build state").get("completed", []):
    saved = config_lib.BuildConfig.load(os.path.join(out_dir, config_lib.CONFIG_FILE))
    if saved != recipe:
      raise PipelineError(f"{out_dir} holds a re-run of another build's recipe; give another "
                          "--work_dir, or remove that folder to re-run it")
    return out_dir
  common.progress(f"learning_curve: the recipe of {build_dir} on {fraction:g} of its training "
                  f"lesions, draw {draw}, in {out_dir}")
  stages.run(recipe, config_lib.RunOptions(output_dir=out_dir, stop_after="crt",
                                           resume=started).validate())
  keras.backend.clear_session()
  return out_dir


def score(build_dir: str, cache_path: str) -> dict:
  """{"train_images", "val", "test", "test_tta8", "finetune_epoch_seconds"} of a build's
  float model (scores cached at cache_path by the model's digest)."""
  from pipeline import atomic  # pylint: disable=g-import-not-at-top

  def scores(model) -> dict:  # Loads the data only when the model is scored anew.
    config, _, split = readout.build_data(build_dir)
    return readout.score_model(model, split, config.model.normalization)

  row = dict(readout.cached_scores(build_dir, cache_path, scores))
  report = atomic.read_json(os.path.join(build_dir, "report.json"), "build report")
  return {**row, "train_images": int(report["data"]["totals"]["train"]),
          "finetune_epoch_seconds": float(np.mean(
              report["training"]["finetune"]["history"]["seconds"]))}


def fit_line(points: Sequence[dict], key: str, targets: Sequence[float]) -> dict:
  """Least squares of points' `key` on log2(train_images): the gain per doubling (with its 95%
  interval) and, per target, the training images where the line reaches it (at the slope
  and at its interval's ends, pivoting on the points' centre)."""
  from scipy import stats  # pylint: disable=g-import-not-at-top
  x = np.log2([p["train_images"] for p in points])
  y = np.array([p[key] for p in points])
  fit = stats.linregress(x, y)
  half = stats.t.ppf(0.975, len(x) - 2) * fit.stderr
  slopes = {"slope": fit.slope, "low": fit.slope - half, "high": fit.slope + half}
  reach = {}
  for target in targets:
    reach[f"{target:g}"] = {name: float(2 ** (x.mean() + (target - y.mean()) / s)) if s > 0
                            else None for name, s in slopes.items()}
  return {"per_doubling": float(fit.slope), "per_doubling_low": float(slopes["low"]),
          "per_doubling_high": float(slopes["high"]), "intercept": float(fit.intercept),
          "r": float(fit.rvalue), "points": len(x), "train_images_to_reach": reach}


def check_one_split(builds: Sequence[str]) -> None:
  """Raises PipelineError unless every build is a finished one scored on the first one's test
  images (so every point of the curve is scored on the same images)."""
  from pipeline import config as config_lib  # pylint: disable=g-import-not-at-top
  from pipeline.data import splits as splits_lib  # pylint: disable=g-import-not-at-top
  from pipeline.errors import PipelineError  # pylint: disable=g-import-not-at-top
  from pipeline.stages.training import FLOAT_MODEL  # pylint: disable=g-import-not-at-top
  tests = []
  for build in builds:
    path = config_lib.build_files(build, ["splits.csv", FLOAT_MODEL, "report.json"],
                                  "the crt stage")[0]
    tests.append({k for k, s in splits_lib.read_assignment(path).items() if s == "test"})
  for build, test in zip(builds[1:], tests[1:]):
    if test != tests[0]:
      raise PipelineError(f"--build_dir={build} has another test split than --build_dir="
                          f"{builds[0]}; give builds of one split (--split_file)")


def measure_from_flags() -> dict:
  from pipeline.errors import PipelineError  # pylint: disable=g-import-not-at-top
  if not FLAGS.build_dir:
    raise PipelineError("give at least one --build_dir=BUILD (a finished build)")
  try:
    fractions = sorted({float(f) for f in FLAGS.fractions})
    targets = [float(t) for t in FLAGS.targets]
  except ValueError as e:
    raise PipelineError(f"--fractions and --targets take numbers: {e}") from e
  if not all(0 < f < 1 for f in fractions) or not all(0 < t < 1 for t in targets):
    raise PipelineError("--fractions and --targets must be in (0, 1), e.g. --fractions=0.25,0.5")
  check_one_split(FLAGS.build_dir)
  work = FLAGS.work_dir or os.path.join(os.path.dirname(os.path.abspath(FLAGS.output_json)),
                                        "learning_curve_work")
  points = []
  for build_dir in FLAGS.build_dir:
    points.append({"fraction": 1.0, "draw": 0, "build": build_dir,
                   **score(build_dir, os.path.join(common.work_folder(work, build_dir),
                                                   "scores.json"))})
    common.progress(f"learning_curve: {build_dir}: test {points[-1]['test']:.1%}")
  for fraction in fractions:
    for draw in range(1, FLAGS.draws + 1):
      out = rerun(FLAGS.build_dir[0], fraction, draw,
                  os.path.join(work, f"fraction{fraction:g}-draw{draw}"))
      points.append({"fraction": fraction, "draw": draw, "build": out,
                     **score(out, os.path.join(out, "learning_curve_scores.json"))})
      common.progress(f"learning_curve: fraction {fraction:g} draw {draw}: "
                      f"{points[-1]['train_images']} training images, test "
                      f"{points[-1]['test']:.1%}")
  return analyse(FLAGS.build_dir, points, targets, os.path.splitext(FLAGS.output_json)[0] + ".png")


def analyse(builds: Sequence[str], points: List[dict], targets: Sequence[float],
            plot_path: str) -> dict:
  """The report of scored points: per fraction, and the lines fit to all of them and to the
  last doubling alone (fractions >= 0.5; where a learning curve flattens, the nearer
  estimate of what more data gives), with the plot."""
  upper = [p for p in points if p["fraction"] >= 0.5]
  spans = {"all": points}
  if len({p["fraction"] for p in upper}) > 1 and len(upper) > 2:
    spans["last_doubling"] = upper
  payload = {"builds": list(builds), "points": points, "targets": list(targets),
             "by_fraction": by_fraction(points),
             "fits": {span: {key: fit_line(chosen, key, targets) for key in VIEWS}
                      for span, chosen in spans.items()}}
  plot(payload, plot_path)
  return payload


def by_fraction(points: Sequence[dict]) -> Dict[str, dict]:
  """Per fraction: models, training images, and mean/min/max of each figure."""
  out = {}
  for fraction in sorted({p["fraction"] for p in points}):
    group = [p for p in points if p["fraction"] == fraction]
    out[f"{fraction:g}"] = {
        "models": len(group), "train_images": int(np.mean([p["train_images"] for p in group])),
        **{key: {"mean": float(np.mean(v)), "min": float(np.min(v)), "max": float(np.max(v))}
           for key in ("val",) + VIEWS + ("finetune_epoch_seconds",)
           for v in [[p[key] for p in group]]}}
  return out


def plot(payload: dict, path: str) -> None:
  """Every model's test balanced accuracy (one view and 8 views) against its training images
  (log scale), with each view's lines extended to twice today's training images."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  from pipeline import report  # pylint: disable=g-import-not-at-top
  fig, ax = plt.subplots(figsize=(7, 4.5))
  points = payload["points"]
  n = np.array([p["train_images"] for p in points], float)
  right = n.max() * 2
  for key, colour, name in (("test", "C0", "float32, one view"),
                            ("test_tta8", "C1", "float32, 8 dihedral views")):
    ax.plot(n, [p[key] for p in points], "o", color=colour, alpha=0.5, label=name)
    for span, style in (("all", "--"), ("last_doubling", ":")):
      if span not in payload["fits"]:
        continue
      fit = payload["fits"][span][key]
      xs = np.geomspace(n.min() if span == "all" else n.max() / 2, right, 50)
      ax.plot(xs, fit["intercept"] + fit["per_doubling"] * np.log2(xs), style, color=colour,
              label=f"{fit['per_doubling']:+.1%} per doubling ({span.replace('_', ' ')})")
  for target in payload["targets"]:
    ax.axhline(target, color="0.6", lw=0.8)
    ax.text(n.min(), target, f" {target:.0%}", va="bottom", fontsize=8, color="0.4")
  ax.axvline(n.max(), color="0.8", lw=1)
  ax.set_xscale("log", base=2)
  ticks = sorted({int(v) for v in n}) + [int(n.max() * 1.5), int(n.max() * 2)]
  ax.set_xticks(ticks, [f"{t}\n({t / n.max():.2g}x)" for t in ticks], fontsize=8)
  ax.minorticks_off()
  ax.set(xlabel="training images (log scale); right of the grey line: extrapolated",
         ylabel="test balanced accuracy", title="Learning curve of the recipe")
  ax.legend(fontsize=8, loc="lower right")
  report.save_figure(fig, path)
  plt.close(fig)


def markdown(payload: dict) -> List[str]:
  lines = ["# Learning curve", "", "Builds at the whole training split: "
           + ", ".join(f"`{b}`" for b in payload["builds"]) + ".", "",
           "| fraction | training images | models | test, one view | test, 8 views | "
           "validation | fine-tune s/epoch |", "|---:|---:|---:|---:|---:|---:|---:|"]
  cell = lambda s: f"{s['mean']:.1%} ({s['min']:.1%}-{s['max']:.1%})"
  for fraction, row in payload["by_fraction"].items():
    lines.append(f"| {fraction} | {row['train_images']} | {row['models']} | {cell(row['test'])} "
                 f"| {cell(row['test_tta8'])} | {cell(row['val'])} | "
                 f"{row['finetune_epoch_seconds']['mean']:.0f} |")
  full = max(p["train_images"] for p in payload["points"])
  lines += ["", "| line | figure | gain per doubling (95% interval) | r | "
            + " | ".join(f"training images for {t:.0%} (x today's)" for t in payload["targets"])
            + " |", "|---|---|---:|---:|" + "---:|" * len(payload["targets"])]
  times = lambda v: "never (no gain)" if v is None else f"{v:,.0f} ({v / full:.1f}x)"

  def interval(reach: dict) -> str:  # The slope's interval ends, nearer first.
    ends = sorted(v for v in (reach["high"], reach["low"]) if v is not None)
    return " to ".join([times(v) for v in ends] + [times(None)] * (len(ends) < 2))

  for span, fits in payload["fits"].items():
    for key, fit in fits.items():
      reach = [fit["train_images_to_reach"][f"{t:g}"] for t in payload["targets"]]
      lines.append(f"| {span.replace('_', ' ')} ({fit['points']} models) | {key} | "
                   f"{fit['per_doubling']:+.1%} ({fit['per_doubling_low']:+.1%} to "
                   f"{fit['per_doubling_high']:+.1%}) | {fit['r']:.2f} | "
                   + " | ".join(f"{times(r['slope'])}; interval {interval(r)}" for r in reach)
                   + " |")
  lines += ["", "Reaching a target is read off a straight line in log2(training images): an "
            "extrapolation beyond the data, and learning curves flatten, so the figures are a "
            "lower bound on the data needed."]
  return lines


def main(argv: List[str]) -> None:
  common.main("benchmarks.learning_curve", argv, measure_from_flags, markdown,
              FLAGS.output_json, FLAGS.output_md)


if __name__ == "__main__":
  define_flags()
  app.run(main)
