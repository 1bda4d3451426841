"""A paired comparison of two cross-validations of the same folds (benchmarks/crossval.py
--from_work_dir or --compare_to): per fold, each variant's balanced accuracy, int8's agreement
with float32, its flips and score moves, the gate and the stages' seconds, and the difference
over folds."""

import os
from typing import Dict, List, Optional

import numpy as np

from benchmarks import common
from benchmarks.common import interval
from pipeline.config.choices import STAGES

VARIANTS = ("float32", "int8", "int8_tta8")  # What a cross-validation reports and compares.


def check_same_folds(work_dir: str, other: str, folds: List[int]) -> None:
  """A paired comparison needs each fold to hold out the same images on both sides (what each
  side trained on may differ: a learning curve leaves training images out).

  Raises:
    PipelineError: a fold of the two whose held-out images differ.
  """
  from pipeline.data import splits as splits_lib  # pylint: disable=g-import-not-at-top
  from pipeline.errors import PipelineError  # pylint: disable=g-import-not-at-top
  for i in folds:
    held_out = []
    for d in (work_dir, other):
      path = os.path.join(d, f"fold_{i}", splits_lib.FILE_NAME)
      if not os.path.isfile(path):
        raise PipelineError(f"{path}: not found, so fold {i} of {d} cannot be paired; finish "
                            f"the fold (benchmarks.crossval --work_dir={d}) or compare others")
      held_out.append(sorted(k for k, s in splits_lib.read_assignment(path).items()
                             if s == "test"))
    if held_out[0] != held_out[1]:
      raise PipelineError(f"{other}: fold {i} holds out other images than {work_dir}'s fold "
                          f"{i}; compare cross-validations of the same data, seed and --folds")


# What a paired comparison gives per fold: (name, unit, figure of a report).
PAIRED_FIGURES = tuple(
    (f"{v} balanced accuracy", "share", lambda r, v=v: r["models"][v]["balanced_accuracy"])
    for v in VARIANTS) + (
    ("int8 top-1 agreement with float32", "share",
     lambda r: r["models"]["int8"]["top1_agreement"]),
    ("int8 flips", "count", lambda r: r["models"]["int8"]["disagreements"]))
MOVE = 0.2  # An int8 score this far from float32's is a move an app user could see.


def int8_moves(fold_dir: str) -> np.ndarray:
  """Per held-out image of the fold, the largest change of any class score from the fold's
  float32 model to its int8 model (the tail the gate's confident flips come from)."""
  from pipeline.config import model_file_name  # pylint: disable=g-import-not-at-top
  from pipeline.runner import load_model_file  # pylint: disable=g-import-not-at-top
  _, split = common.build_split(fold_dir, "test")
  pixels = split.pixels()
  probs = []
  for variant in ("float32", "int8"):
    runner, meta = load_model_file(os.path.join(fold_dir, model_file_name(variant)))
    probs.append((runner.predict(pixels), list(meta["labels"])))
  (reference, ref_labels), (int8, int8_labels) = probs
  if ref_labels != int8_labels:  # One build writes both with its labels.txt.
    from pipeline.errors import PipelineError  # pylint: disable=g-import-not-at-top
    raise PipelineError(f"{fold_dir}: its float32 and int8 models embed different labels "
                        f"({ref_labels} against {int8_labels}); rebuild the fold")
  return np.abs(int8 - reference).max(axis=1)


def move_figures(base_moves: Dict[int, np.ndarray], moves: Dict[int, np.ndarray]) -> dict:
  """{name: (unit, {fold: [base, this]})}: images moved by more than MOVE, and the 99th
  percentile of the moves."""
  folds = sorted(set(base_moves) & set(moves))
  return {
      f"int8 images moved over {MOVE} from float32": ("count", {
          i: [int((base_moves[i] > MOVE).sum()), int((moves[i] > MOVE).sum())] for i in folds}),
      "int8's largest score move, 99th percentile": ("probability", {
          i: [float(np.percentile(base_moves[i], 99)), float(np.percentile(moves[i], 99))]
          for i in folds})}


def paired(reports: Dict[int, dict], base: Dict[int, dict], stages=STAGES,
           more: Optional[dict] = None) -> dict:
  """Each figure of PAIRED_FIGURES (and of `more`, {name: (unit, {fold: [base, this]})}) and
  the seconds of each of `stages` (those taking a second or more), on the folds both
  cross-validations finished: per fold (base, this) and the difference over folds."""
  folds = sorted(set(reports) & set(base))
  out = {"folds": folds, "figures": {}, "stage_seconds": {}, "gate_passed": {
      i: [base[i]["gate"]["passed"], reports[i]["gate"]["passed"]] for i in folds}}
  figures = []
  for name, unit, figure in PAIRED_FIGURES:
    try:
      figures.append((name, unit, {i: [figure(base[i]), figure(reports[i])] for i in folds}))
    except KeyError:  # A variant one side did not build.
      continue
  figures += [(name, unit, pairs) for name, (unit, pairs) in (more or {}).items()]
  for name, unit, pairs in figures:
    pairs = {i: pairs[i] for i in folds if i in pairs}
    out["figures"][name] = {"unit": unit, "per_fold": pairs, "difference": interval(
        [b - a for a, b in pairs.values()], bounds=None) if pairs else None}
  for stage in stages:
    pairs = {i: [base[i]["stage_seconds"].get(stage), reports[i]["stage_seconds"].get(stage)]
             for i in folds}
    complete = folds and all(None not in p for p in pairs.values())
    if complete and max(map(max, pairs.values())) >= 1:
      out["stage_seconds"][stage] = pairs
  return out


def compare(work_dir: str, other: str, reports: Dict[int, dict], base: Dict[int, dict],
            rescore: bool, stages=STAGES) -> dict:
  """The paired comparison of WORK_DIR's finished folds (`reports`) with OTHER's (`base`), on
  the folds both finished; `rescore` adds the int8 score moves (runs each fold's float32 and
  int8 models on its held-out lesions).

  Raises:
    PipelineError: a fold of the two holding out different images.
  """
  both = sorted(set(reports) & set(base))
  check_same_folds(work_dir, other, both)
  more = None
  if rescore and both:
    common.progress("the int8 score moves from float32 on each fold's held-out lesions ...")
    more = move_figures({i: int8_moves(os.path.join(other, f"fold_{i}")) for i in both},
                        {i: int8_moves(os.path.join(work_dir, f"fold_{i}")) for i in both})
  return paired(reports, base, stages, more)


def markdown(payload: dict) -> List[str]:
  """The comparison's table (none without one)."""
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
    if f["difference"] is None:  # No fold has this figure on both sides.
      continue
    scale, unit, fmt, places = {
        "share": (100, " points", lambda x: f"{100 * x:.1f}%", 1),
        "count": (1, "", lambda x: f"{x:.0f}", 1),
        "probability": (1, "", lambda x: f"{x:.3f}", 3)}[f["unit"]]
    d = f["difference"]
    num = lambda x, places=places: f"{scale * x:+.{places}f}"
    diff = f"{num(d['mean'])}{unit} ({num(d['min'])} to {num(d['max'])})"
    if d["ci95"]:
      diff += f", {num(d['ci95'][0])} to {num(d['ci95'][1])}"
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
