r"""Runs one build under several seeds and tabulates its parity gate: does the gate's verdict
hold when only the seed (split, initialization, shuffling) changes?

  python -m benchmarks.gate_seeds --build_flagfile=configs/demo.flags --seeds=1,2,3,4,5 \
      --output_dir=build/gate_seeds

Each seed is a whole `pipeline.build` in its own process (gate enforced, as a user runs it),
writing to OUTPUT_DIR/seed_N; the table comes from each build's report.json.
"""

import json
import os
import subprocess
import sys
import time
from typing import List

from absl import app
from absl import flags

from benchmarks import common

FLAGS = flags.FLAGS


def define_flags() -> None:
  """Defined when run, not on import: the tests import benchmark functions into one process,
  where two benchmarks' flags of the same name (--model, --build_dir) would clash."""
  flags.DEFINE_string("build_flagfile", "configs/demo.flags", "The build to repeat.")
  flags.DEFINE_list("seeds", ["1", "2", "3", "4", "5"], "Seeds, one build each.")
  flags.DEFINE_string("output_dir", "build/gate_seeds", "Where the builds and reports go.")


def run(build_flagfile: str, seeds: List[int], output_dir: str) -> dict:
  """Builds once per seed; returns {"builds": [per-seed gate figures], ...}."""
  from pipeline.errors import PipelineError  # pylint: disable=g-import-not-at-top
  if not os.path.isfile(build_flagfile):
    raise PipelineError(f"--build_flagfile={build_flagfile}: no such file")
  builds = []
  t_start = time.time()
  for n, seed in enumerate(seeds):
    out = os.path.join(output_dir, f"seed_{seed}")
    t0 = time.time()
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline.build", f"--flagfile={build_flagfile}",
         f"--seed={seed}", f"--output_dir={out}", f"--assets_dir={os.path.join(out, 'assets')}"],
        capture_output=True, text=True, check=False)
    seconds = time.time() - t0
    with open(os.path.join(out, "build.log"), "w", encoding="utf-8") as f:
      f.write(proc.stdout + proc.stderr)
    report_path = os.path.join(out, "report.json")
    row = {"seed": seed, "exit_code": proc.returncode, "seconds": round(seconds, 1),
           "output_dir": out}
    if os.path.isfile(report_path):
      with open(report_path, encoding="utf-8") as f:
        report = json.load(f)
      paired = report.get("models", {}).get("int8", {}).get("paired")
      if paired and report.get("gate"):
        row.update(passed=report["gate"]["passed"], reasons=report["gate"]["reasons"],
                   n=paired["n"], agreement=paired["top1_agreement"],
                   flips=len(paired["flips"]),
                   max_flip_margin=max((f["reference_margin"] for f in paired["flips"]),
                                       default=None),
                   mcnemar=paired["mcnemar"], drop=paired["balanced_accuracy_drop"],
                   drop_ci95=paired["balanced_accuracy_drop_ci95"],
                   float32_balanced_accuracy=report["models"]["float32"]["balanced_accuracy"],
                   int8_balanced_accuracy=report["models"]["int8"]["balanced_accuracy"],
                   float16_passes=report["gate"]["other_variants"].get("float16"))
    builds.append(row)
    eta = (time.time() - t_start) / (n + 1) * (len(seeds) - n - 1)
    print(f"seed {seed}: exit {proc.returncode}, gate "
          f"{'passed' if row.get('passed') else 'FAILED' if 'passed' in row else 'not reached'}"
          f" ({seconds:.0f} s; ETA {eta / 60:.1f} min)", flush=True)
  return {"build_flagfile": build_flagfile, "builds": builds,
          "all_passed": all(b.get("passed") and b["exit_code"] == 0 for b in builds)}


def markdown(payload: dict) -> List[str]:
  lines = [f"# Parity gate over seeds: `{payload['build_flagfile']}`", "",
           "| seed | exit | gate | test images | agreement | flips (max float32 margin) | "
           "float32 alone right / int8 alone right (McNemar p) | bacc drop (95% CI) | "
           "float32 / int8 bacc | float16 passes | time |",
           "|---:|---:|---|---:|---:|---|---|---|---|---|---:|"]
  for b in payload["builds"]:
    if "passed" not in b:
      lines.append(f"| {b['seed']} | {b['exit_code']} | not reached (see {b['output_dir']}/"
                   f"build.log) | | | | | | | | {b['seconds']:.0f} s |")
      continue
    m, (lo, hi) = b["mcnemar"], b["drop_ci95"]
    margin = f" ({b['max_flip_margin']:.3f})" if b["flips"] else ""
    lines.append(
        f"| {b['seed']} | {b['exit_code']} | {'passed' if b['passed'] else 'FAILED'} | {b['n']} | "
        f"{b['agreement']:.4f} | {b['flips']}{margin} | {m['reference_only_right']} / "
        f"{m['candidate_only_right']} ({m['p_two_sided']:.3g}) | {100 * b['drop']:+.2f} "
        f"({100 * lo:+.2f} to {100 * hi:+.2f}) | {100 * b['float32_balanced_accuracy']:.1f}% / "
        f"{100 * b['int8_balanced_accuracy']:.1f}% | {b['float16_passes']} | "
        f"{b['seconds']:.0f} s |")
  lines += ["", "All passed." if payload["all_passed"] else "NOT all passed."]
  return lines


def measure_from_flags() -> dict:
  return run(FLAGS.build_flagfile, [int(s) for s in FLAGS.seeds], FLAGS.output_dir)


def main(argv: List[str]) -> None:
  common.main("benchmarks.gate_seeds", argv, measure_from_flags, markdown,
              os.path.join(FLAGS.output_dir, "gate_seeds.json"), "")
  if not json.load(open(os.path.join(FLAGS.output_dir, "gate_seeds.json")))["all_passed"]:
    sys.exit(1)


if __name__ == "__main__":
  define_flags()
  app.run(main)
