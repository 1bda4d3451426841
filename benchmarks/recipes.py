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

  python -m benchmarks.recipes --report=control=control.json \
      --report="whole backbone=whole.json" --report="lr 1e-3=lr1e3.json" \
      --output_json=recipes.json
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
                            "against it build by build.")
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


def pair(reports: List[Tuple[str, dict]]) -> dict:
  """{"recipes": [{"name", "student", "epoch_seconds"}], "builds": [{"build", "rows"}],
  "summary"}: every report's students per build, the control's (the first) as the base.

  Raises:
    PipelineError: fewer than two reports, a repeated name, or reports not of the same builds
      in the same order.
  """
  from pipeline.errors import PipelineError  # pylint: disable=g-import-not-at-top
  if len(reports) < 2:
    raise PipelineError("give a control and at least one recipe: --report=NAME=PATH twice or "
                        "more (the first is the control)")
  names = [name for name, _ in reports]
  if len(set(names) | {SHIPPED}) != len(names) + 1:
    raise PipelineError(f"--report names must differ (and not be {SHIPPED!r}): {names}")
  for name, payload in reports:
    if not (isinstance(payload, dict) and "student" in payload and payload.get("builds")
            and all("student" in b.get("rows", {}) for b in payload["builds"])):
      raise PipelineError(f"--report={name}: not a benchmarks.distill report (no students)")
  control_name, control = reports[0]
  order = [b["build"] for b in control["builds"]]
  for name, payload in reports[1:]:
    got = [b["build"] for b in payload["builds"]]
    if got != order:
      raise PipelineError(f"--report={name}: its builds {got} are not the control's {order} "
                          "(in that order): only re-runs of the same builds pair")
  builds = [{"build": build, "rows": {
      SHIPPED: control["builds"][i]["rows"][SHIPPED],
      **{name: payload["builds"][i]["rows"]["student"] for name, payload in reports}}}
            for i, build in enumerate(order)]
  summary = readout.summarize(builds, base=control_name)
  recipes = [{"name": name, "student": payload["student"],
              "epoch_seconds": [b["student_epoch_seconds"] for b in payload["builds"]]}
             for name, payload in reports]
  return {"control": control_name, "recipes": recipes, "builds": builds, "summary": summary}


def markdown(payload: dict) -> List[str]:
  lines = ["# Fine-tune recipes paired against a control, on the same builds", "",
           f"Control: **{payload['control']}**. Each recipe's students were fine-tuned again on "
           "the same builds (benchmarks.distill), then their classifiers re-fit as the builds "
           "did; shipped: the builds' own models. Balanced accuracy; change: paired against the "
           "control, build by build, mean (min to max). Test TTA8: the float model's mean over "
           "the 8 dihedral views.", ""]
  for r in payload["recipes"]:
    seconds = ", ".join(f"{s:.0f}" for s in r["epoch_seconds"])
    lines.append(f"- {r['name']}: {distill_report.describe(r['student'])}; fine-tune seconds per "
                 f"epoch {seconds}.")
  return lines + [""] + readout.paired_table("recipe", payload["summary"], payload["builds"])


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
