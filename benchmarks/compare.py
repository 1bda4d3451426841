r"""Compare: two recipes over several finished builds each, from their report.json files; or,
with --baseline alone, one recipe's figures over its builds.

One training run proves nothing here (the same command varies by up to 6 points), so a recipe
is compared over several builds (seeds) and the table gives mean (min-max). When the two
groups are paired (the same split and seed in the same order, e.g. a recipe change re-run from
the same fine-tuned backbones with --resume), it also gives each pair's change.

Per group and variant (float32, float32_tta8, int8, int8_tta8, ...): test balanced and top-1
accuracy; per-class test recall (mean); the referral operating point on test; the parity
gate's verdicts; the build's minutes, with the fine-tune seconds per epoch that make times
comparable across machines.

  python -m benchmarks.compare --baseline=build/a1 --baseline=build/a2 --baseline=build/a3 \
      --candidate=build/b1 --candidate=build/b2 --candidate=build/b3 --paired \
      --output_json=compare.json
  python -m benchmarks.compare --baseline=build/a1 --baseline=build/a2 --baseline=build/a3 \
      --output_json=default.json
"""

import os
from typing import Dict, List

import numpy as np
from absl import app
from absl import flags

from benchmarks import common

FLAGS = flags.FLAGS
GROUPS = ("baseline", "candidate")


def define_flags() -> None:
  """Defined when run, not on import: the tests import benchmark functions into one process,
  where two benchmarks' flags of the same name (--model, --build_dir) would clash."""
  flags.DEFINE_multi_string("baseline", [], "A finished build of the baseline recipe (repeatable).")
  flags.DEFINE_multi_string("candidate", [], "A finished build of the candidate recipe "
                            "(repeatable; none: the baseline's figures alone).")
  flags.DEFINE_bool("paired", False, "The i-th candidate shares the i-th baseline's split and "
                    "seed: also report each pair's change.")
  flags.DEFINE_string("output_json", "compare.json", "JSON report path.")
  flags.DEFINE_string("output_md", "", "Markdown report path (default: beside the JSON).")


def read_build(build_dir: str) -> dict:
  """What one build measured: per-variant test balanced and top-1 accuracy and per-class
  recall, the referral operating point on test (when the build has one), the gate, minutes
  and fine-tune seconds per epoch.

  Raises:
    PipelineError: no report.json with test figures.
  """
  from pipeline import atomic  # pylint: disable=g-import-not-at-top
  from pipeline.errors import PipelineError  # pylint: disable=g-import-not-at-top
  path = os.path.join(build_dir, "report.json")
  report = atomic.read_json(path, "a build report: give the output directory of a build that "
                            "ran its evaluate stage")
  if not report.get("models"):
    raise PipelineError(f"{path}: the build has no test figures yet (its evaluate stage did not "
                        "run); finish it with --resume")
  epochs = report.get("training", {}).get("finetune", {}).get("history", {}).get("seconds", [])
  gate = report.get("gate") or {}
  referral = (report.get("referral") or {}).get("test", {})
  return {"build": build_dir,
          "balanced_accuracy": {v: m["balanced_accuracy"] for v, m in report["models"].items()},
          "accuracy": {v: m["accuracy"] for v, m in report["models"].items()},
          "referral": {v: {k: r[k] for k in ("sensitivity", "specificity")}
                       for v, r in referral.items()},
          "recall": {v: m["per_class_recall"] for v, m in report["models"].items()},
          "gate_passed": gate.get("passed"),
          "minutes": sum(report.get("stage_seconds", {}).values()) / 60,
          "finetune_seconds_per_epoch": float(np.mean(epochs)) if epochs else None}


def _stats(values: List[float]) -> dict:
  v = np.asarray(values, float)
  return {"mean": float(v.mean()), "min": float(v.min()), "max": float(v.max())}


def _spread(values: List[float]) -> dict:
  """_stats and the sample standard deviation (ddof 1; 0 for one build): how far one build of
  the recipe lands from its mean."""
  return {**_stats(values), "sd": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0}


def summarize(builds: List[dict]) -> dict:
  """Mean, min and max over one group's builds, for what every build measured."""
  variants = [v for v in builds[0]["balanced_accuracy"]
              if all(v in b["balanced_accuracy"] for b in builds)]
  labels = list(builds[0]["recall"][variants[0]]) if variants else []
  per_epoch = [b["finetune_seconds_per_epoch"] for b in builds
               if b["finetune_seconds_per_epoch"] is not None]
  referred = [v for v in builds[0]["referral"] if all(v in b["referral"] for b in builds)]
  return {"builds": len(builds),
          "balanced_accuracy": {v: _spread([b["balanced_accuracy"][v] for b in builds])
                                for v in variants},
          "accuracy": {v: _stats([b["accuracy"][v] for b in builds]) for v in variants},
          "referral": {v: {k: _stats([b["referral"][v][k] for b in builds])
                           for k in ("sensitivity", "specificity")} for v in referred},
          "recall": {v: {c: _stats([b["recall"][v][c] for b in builds]) for c in labels}
                     for v in variants},
          "gate_passed": sum(1 for b in builds if b["gate_passed"]),
          "minutes": _stats([b["minutes"] for b in builds]),
          "finetune_seconds_per_epoch": _stats(per_epoch) if per_epoch else None}


def paired_changes(baseline: List[dict], candidate: List[dict]) -> Dict[str, dict]:
  """variant -> candidate minus baseline balanced accuracy, pair by pair, with its stats."""
  out = {}
  for v in baseline[0]["balanced_accuracy"]:
    if all(v in b["balanced_accuracy"] for b in baseline + candidate):
      d = [c["balanced_accuracy"][v] - b["balanced_accuracy"][v]
           for b, c in zip(baseline, candidate)]
      out[v] = {"changes": d, **_stats(d)}
  return out


def groups(payload: dict) -> List[str]:
  """The groups a report holds: the baseline, and the candidate when one was given."""
  return [g for g in GROUPS if payload.get(g)]


def markdown(payload: dict) -> List[str]:
  present = groups(payload)
  pct = lambda s: f"{100 * s['mean']:.1f}% ({100 * s['min']:.1f}-{100 * s['max']:.1f})"
  spread = lambda s: f"{pct(s)}, SD {100 * s['sd']:.1f}" if "sd" in s else pct(s)
  summary = payload["summary"]
  head = "| " + " | ".join(present) + " |"
  rule = "---:|" * len(present)
  lines = ["# Compare: two recipes over finished builds" if len(present) == 2 else
           "# One recipe over finished builds", ""]
  for group in present:
    lines.append(f"- {group}: " + ", ".join(f"`{b['build']}`" for b in payload[group]))
  variants = [v for v in summary["baseline"]["balanced_accuracy"]
              if all(v in summary[g]["balanced_accuracy"] for g in present)]
  paired = payload.get("paired")
  lines += ["", "Test balanced accuracy, mean (min-max) over the builds, and its standard "
            "deviation from build to build"
            + ("; change: candidate minus baseline, pair by pair, mean (min to max)."
               if paired else "."), "",
            "| variant " + head + (" change |" if paired else ""),
            "|---|" + rule + ("---:|" if paired else "")]
  for v in variants:
    row = "| " + v + " | " + " | ".join(
        spread(summary[g]["balanced_accuracy"][v]) for g in present) + " |"
    if paired and v in paired:
      p = paired[v]
      row += f" {100 * p['mean']:+.1f} ({100 * p['min']:+.1f} to {100 * p['max']:+.1f}) |"
    lines.append(row)
  lines += ["", "Test top-1 accuracy (all images count alike), mean (min-max):", "",
            "| variant " + head, "|---|" + rule]
  lines += ["| " + v + " | " + " | ".join(pct(summary[g]["accuracy"][v]) for g in present)
            + " |" for v in variants]
  referred = [v for v in summary["baseline"]["referral"]
              if all(v in summary[g]["referral"] for g in present)]
  if referred:
    lines += ["", "Referral on test at each build's threshold (fit for the target sensitivity "
              "on validation), sensitivity / specificity, mean (min-max):", "",
              "| model " + head, "|---|" + "---|" * len(present)]
    for v in referred:
      lines.append(f"| {v} | " + " | ".join(
          f"{pct(summary[g]['referral'][v]['sensitivity'])} / "
          f"{pct(summary[g]['referral'][v]['specificity'])}" for g in present) + " |")
  if variants:
    v = "float32" if "float32" in variants else variants[0]
    labels = list(summary["baseline"]["recall"][v])
    lines += ["", f"Per-class test recall of {v}, mean over the builds:", "",
              "| group | " + " | ".join(labels) + " |", "|---|" + "---:|" * len(labels)]
    for group in present:
      lines.append(f"| {group} | " + " | ".join(
          f"{100 * summary[group]['recall'][v][c]['mean']:.0f}%" for c in labels) + " |")
  lines += ["", "| group | gate passed | build minutes | fine-tune s/epoch |", "|---|---|---|---|"]
  for group in present:
    s = summary[group]
    per_epoch = s["finetune_seconds_per_epoch"]
    lines.append(f"| {group} | {s['gate_passed']}/{s['builds']} | {s['minutes']['mean']:.0f} "
                 f"({s['minutes']['min']:.0f}-{s['minutes']['max']:.0f}) | "
                 + (f"{per_epoch['mean']:.0f} ({per_epoch['min']:.0f}-{per_epoch['max']:.0f})"
                    if per_epoch else "-") + " |")
  return lines


def measure_from_flags() -> dict:
  from pipeline.errors import PipelineError  # pylint: disable=g-import-not-at-top
  if not FLAGS.baseline:
    raise PipelineError("give at least one --baseline=BUILD (and --candidate=BUILD to compare "
                        "two recipes)")
  if FLAGS.paired and len(FLAGS.baseline) != len(FLAGS.candidate):
    raise PipelineError(f"--paired needs as many candidates as baselines (got "
                        f"{len(FLAGS.candidate)} and {len(FLAGS.baseline)})")
  payload = {g: [read_build(d) for d in getattr(FLAGS, g)] for g in GROUPS}
  payload["summary"] = {g: summarize(payload[g]) for g in groups(payload)}
  if FLAGS.paired:
    payload["paired"] = paired_changes(payload["baseline"], payload["candidate"])
  return payload


def main(argv: List[str]) -> None:
  common.main("benchmarks.compare", argv, measure_from_flags, markdown, FLAGS.output_json,
              FLAGS.output_md)


if __name__ == "__main__":
  define_flags()
  app.run(main)
