"""The distillation benchmark's report: one line naming a student's recipe (what differs from
the build it re-trains), shared with benchmarks.recipes, and the Markdown of a
benchmarks.distill payload."""

from typing import List

from benchmarks import readout

MEMBERS = ("shipped", "student")  # What --soup averages.


def describe(s: dict) -> str:
  """One line for a Student (as its report holds it): what differs from the build is named."""
  layers = s.get("finetune_layers")
  parts = [f"{s['epochs']} epochs from the {s['init']} weights", f"peak learning rate "
           f"{s['learning_rate']:g} after {s['warmup_epochs']:g} warm-up epoch(s)",
           "the build's layers" if layers is None else f"top {layers} backbone layers"]
  if s.get("label_smoothing") is not None:
    parts.append(f"label smoothing {s['label_smoothing']:g}")
  if s.get("weight_decay"):
    parts.append(f"weight decay {s['weight_decay']:g} (AdamW)")
  if s.get("color_jitter"):
    parts.append(f"colour jitter {s['color_jitter']:g} on top of the build's augmentation")
  if s.get("seed_offset"):
    parts.append(f"seed + {s['seed_offset']}")
  if s.get("low_res_epochs"):
    parts.append(f"first {s['low_res_epochs']} more epochs at {s['low_res_size']} px")
  if s.get("reweight"):
    parts.append(f"{s['reweight']} class weights on " + (
        f"the last {s['reweight_epochs']} epochs" if s.get("reweight_epochs") else "every epoch"))
  if s["label_weight"] < 1:
    parts.append(f"target {s['label_weight']:g} x smoothed labels + {1 - s['label_weight']:g} "
                 "x the 8-view teacher (the fine-tuned model's mean over the 8 dihedral views "
                 "of each training image)")
  return ", ".join(parts)


def markdown(payload: dict) -> List[str]:
  """The report of one benchmarks.distill run: the student's recipe, then each model's figures
  paired against the shipped model build by build (and the soup against its members)."""
  s, builds = payload["student"], payload["builds"]
  title = ("Distillation of the 8-view mean, on finished builds" if s["label_weight"] < 1
           else "Fine-tuning again under another recipe, on finished builds")
  seconds = "Student full-size seconds per epoch: " + ", ".join(
      f"{b['student_epoch_seconds']:.0f}" for b in builds)
  if s.get("low_res_epochs"):
    seconds += "; at low resolution: " + ", ".join(
        f"{b['low_res_epoch_seconds']:.0f}" for b in builds)
  soup = (" Soup: the mean of the student's weights and the build's last fine-tune epoch, "
          "then cRT." if s.get("soup") else "")
  lines = [f"# {title}", "",
           f"{len(builds)} build(s). Student: {describe(s)}; then cRT as the build did.{soup} "
           "Balanced accuracy; change: paired against shipped (the build's model_float.keras), "
           f"mean (min to max). {seconds}.", ""
           ] + readout.paired_table("model", payload["summary"], builds)
  if "soup" in builds[0]["rows"]:
    gains = {figure: readout.member_gains(builds, "soup", MEMBERS, figure)
             for figure in ("test", "test_tta8", "val")}
    lines += ["", "The soup against the mean of its two members (shipped and student), build by "
              "build: " + "; ".join(f"{figure} {readout.signed_range(g)}"
                                    for figure, g in gains.items()) + "."]
  return lines
