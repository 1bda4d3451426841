r"""Recipes: fine-tune re-runs (benchmarks.distill reports) paired against a control.

benchmarks.distill re-runs fine-tuning on finished builds, each student from its build's
transfer weights with one shuffle and augmentation seed, and pairs it against the shipped
model. To compare recipes, pair each report's students instead against a **control**: the
report of the build's own recipe re-run the same way, on the same builds. Then candidate
minus control differs only in the recipe (and in the run-to-run noise of CPU training).

Per recipe: test balanced accuracy with one view and over the 8 dihedral views, and
validation, as mean (min-max) over the builds with the paired change against the control
(mean, min to max), each build's test figure, and the student's fine-tune seconds per epoch.
The builds' shipped models (from the control report) come first, paired the same way.

One draw of a recipe is one data order. A name given again is another draw of it (its report
made with another --seed_offset): each draw pairs with the control's draw of the same seed, and
a table pools each recipe over its draws (draws x builds pairs), the figure to decide on when
one trio of pairs says +2 and the next takes it back.

  python -m benchmarks.recipes --report=control=control.json \
      --report="whole backbone=whole.json" --report="lr 1e-3=lr1e3.json" \
      --output_json=recipes.json
  python -m benchmarks.recipes --report=control=control.json --report=control=control_s1.json \
      --report=sqrt=sqrt.json --report=sqrt=sqrt_s1.json --output_json=pooled.json
"""

import os
from typing import List, Tuple

from absl import app
from absl import flags

from benchmarks import common
from benchmarks import distill_report
from benchmarks import readout

FLAGS = flags.FLAGS
SHIPPED = readout.SHIPPED  # The builds' own models, from the control's report.


def define_flags() -> None:
  """Defined when run, not on import (see benchmarks.compare)."""
  flags.DEFINE_multi_string("report", [], "NAME=PATH of a benchmarks.distill JSON report "
                            "(repeatable); the first is the control, the others are paired "
                            "against it build by build. A name given again is another draw "
                            "(--seed_offset) of that recipe, paired with the control's draw "
                            "of the same seed, and pooled over its draws.")
  flags.DEFINE_string("output_json", "recipes.json", "JSON report path.")
  flags.DEFINE_string("output_md", "", "Markdown report path (default: beside the JSON).")


def parse_report_flag(value: str) -> Tuple[str, str]:
  """"NAME=PATH" -> (NAME, PATH).

  Raises:
    PipelineError: no name or no path.
  """
  from pipeline.errors import PipelineError  # pylint: disable=g-import-not-at-top
  name, sep, path = value.partition("=")
  if not (sep and name.strip() and path.strip()):
    raise PipelineError(f"--report={value}: expected NAME=PATH, e.g. "
                        "--report=control=control.json")
  return name.strip(), path.strip()


def _key(name: str, offset: int, draws_of_name: int) -> str:
  """A row's name: the recipe's, with its seed when the recipe has several draws."""
  return name if draws_of_name == 1 else f"{name} (--seed_offset={offset})"


def _check(reports: List[Tuple[str, dict]]) -> None:
  """Raises PipelineError unless the reports can pair: two or more, each a benchmarks.distill
  report of the same builds in the same order, each recipe's draws at distinct seeds."""
  from pipeline.errors import PipelineError  # pylint: disable=g-import-not-at-top
  if len(reports) < 2:
    raise PipelineError("give a control and at least one recipe: --report=NAME=PATH twice or "
                        "more (the first is the control)")
  for name, payload in reports:
    if not (isinstance(payload, dict) and "student" in payload and payload.get("builds")
            and all("student" in b.get("rows", {}) for b in payload["builds"])):
      raise PipelineError(f"--report={name}: not a benchmarks.distill report (no students)")
  draws = [(name, _offset(payload)) for name, payload in reports]
  if len(set(draws)) != len(draws) or SHIPPED in dict(draws):
    raise PipelineError(f"--report names must differ (and not be {SHIPPED!r}), unless they are "
                        f"draws of one recipe at different --seed_offset: {draws}")
  order = [b["build"] for b in reports[0][1]["builds"]]
  for name, payload in reports[1:]:
    got = [b["build"] for b in payload["builds"]]
    if got != order:
      raise PipelineError(f"--report={name}: its builds {got} are not the control's {order} "
                          "(in that order): only re-runs of the same builds pair")


def _offset(payload: dict) -> int:
  return int(payload["student"].get("seed_offset") or 0)


def pair(reports: List[Tuple[str, dict]]) -> dict:
  """{"control", "recipes": [{"name", "seed_offset", "student", "epoch_seconds"}], "draws":
  [{"seed_offset", "control" (its row), "builds": [{"build", "rows"}], "summary"}], "pooled"}.

  The first report is the control. A name given again is another draw of that recipe (another
  --seed_offset: another data order). Each draw is paired build by build with the control's
  draw of the same seed, so a recipe and its control differ only in the recipe; "pooled" gives,
  per recipe, the changes over all its pairs (draws x builds).

  Raises:
    PipelineError: fewer than two reports, a repeated draw, reports not of the same builds in
      the same order, or a draw whose seed the control was not run at.
  """
  from pipeline.errors import PipelineError  # pylint: disable=g-import-not-at-top
  _check(reports)
  control_name = reports[0][0]
  controls = {_offset(p): p for n, p in reports if n == control_name}
  names = [n for n, _ in reports]
  key = lambda name, offset: _key(name, offset, names.count(name))
  for name, payload in reports:
    if _offset(payload) not in controls:
      raise PipelineError(f"--report={name}: drawn at --seed_offset={_offset(payload)}, and the "
                          f"control {control_name!r} was not: give the control's report of that "
                          f"seed (--report={control_name}=PATH) to pair it")
  order = [b["build"] for b in reports[0][1]["builds"]]
  draws = []
  for offset, control in controls.items():
    base = key(control_name, offset)
    rows = [(base, control)] + [(key(n, offset), p) for n, p in reports
                                if _offset(p) == offset and n != control_name]
    builds = [{"build": build, "rows": {SHIPPED: control["builds"][i]["rows"][SHIPPED],
                                        **{k: p["builds"][i]["rows"]["student"]
                                           for k, p in rows}}}
              for i, build in enumerate(order)]
    draws.append({"seed_offset": offset, "control": base, "builds": builds,
                  "summary": readout.summarize(builds, base=base)})
  recipes = [{"name": name, "seed_offset": _offset(payload), "student": payload["student"],
              "epoch_seconds": [b["student_epoch_seconds"] for b in payload["builds"]]}
             for name, payload in reports]
  return {"control": control_name, "recipes": recipes, "draws": draws,
          "pooled": _pooled(draws, [SHIPPED] + list(dict.fromkeys(names)), key)}


def _pooled(draws: List[dict], names: List[str], key) -> dict:
  """Per recipe (and shipped) and figure: its figures and its changes against the control,
  over every draw it has and every build (shipped: paired with each control draw)."""
  out = {}
  for name in names:
    pairs = []  # One row pair per draw and build: the recipe's and its control's.
    for draw in draws:
      row = name if name == SHIPPED else key(name, draw["seed_offset"])
      if row in draw["builds"][0]["rows"]:
        pairs += [{"rows": {"recipe": b["rows"][row], "control": b["rows"][draw["control"]]}}
                  for b in draw["builds"]]
    out[name] = readout.summarize(pairs, base="control")["recipe"]
    for fig, stats in out[name].items():
      stats.update(n=len(pairs), wins=sum(p["rows"]["recipe"][fig] > p["rows"]["control"][fig]
                                          for p in pairs))
  return out


def markdown(payload: dict) -> List[str]:
  lines = ["# Fine-tune recipes paired against a control, on the same builds", "",
           f"Control: **{payload['control']}**. Each recipe's students were fine-tuned again on "
           "the same builds (benchmarks.distill), then their classifiers re-fit as the builds "
           "did; shipped: the builds' own models. Balanced accuracy; change: paired against the "
           "control of the same seed, build by build, mean (min to max). Test TTA8: the float "
           "model's mean over the 8 dihedral views.", ""]
  for r in payload["recipes"]:
    seconds = ", ".join(f"{s:.0f}" for s in r["epoch_seconds"])
    lines.append(f"- {r['name']}: {distill_report.describe(r['student'])}; fine-tune seconds per "
                 f"epoch {seconds}.")
  draws = payload["draws"]
  for draw in draws:
    if len(draws) > 1:
      lines += ["", f"## --seed_offset={draw['seed_offset']}"]
    lines += [""] + readout.paired_table("recipe", draw["summary"], draw["builds"])
  if len(draws) > 1:
    pct, chg = readout.percent_range, readout.change_range
    lines += ["", "## Pooled over the seeds", "",
              "Each recipe over all its fine-tunes (draws x builds), each paired with the "
              "control's of the same seed and build.", "",
              "| recipe | pairs | test | change | better on test | test TTA8 | change | val | "
              "change |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, figs in payload["pooled"].items():
      test = figs["test"]
      lines.append(f"| {name} | {test['n']} | {pct(test)} | {chg(test)} | "
                   f"{test['wins']} of {test['n']} | " + " | ".join(
          f"{pct(figs[f])} | {chg(figs[f])}" for f in ("test_tta8", "val")) + " |")
  return lines


def measure_from_flags() -> dict:
  from pipeline import atomic  # pylint: disable=g-import-not-at-top
  reports = []
  for value in FLAGS.report:
    name, path = parse_report_flag(value)
    reports.append((name, atomic.read_json(os.path.expanduser(path),
                                           "a benchmarks.distill JSON report")))
  return pair(reports)


def main(argv: List[str]) -> None:
  common.main("benchmarks.recipes", argv, measure_from_flags, markdown, FLAGS.output_json,
              FLAGS.output_md)


if __name__ == "__main__":
  define_flags()
  app.run(main)
