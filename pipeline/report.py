"""Build reports: report.json, report.md, training_curves.png and confusion_matrix.png."""

from typing import Dict, List, Optional, Sequence

import numpy as np

from pipeline import atomic
from pipeline import parity
from pipeline.config import BALANCE_NAMES
from pipeline.shipped import REFERRAL_FILE


def _pct(x: Optional[float]) -> str:
  return "n/a" if x is None else f"{100 * x:.1f}%"


def models_table(models: Dict[str, dict], labels: Sequence[str]) -> List[str]:
  """Markdown rows comparing the evaluated models (shared with the model card)."""
  rows = ["| model | size | accuracy | balanced acc. (95% CI) | top-2 | malignant sens. | "
          "agreement w/ reference |", "|---|---:|---:|---:|---:|---:|---:|"]
  for name, m in models.items():
    ci = m.get("ci95", {}).get("balanced_accuracy")
    ci_text = f" ({_pct(ci[0])}-{_pct(ci[1])})" if ci else ""
    size = f"{m['size_bytes'] / 1e6:.2f} MB" if "size_bytes" in m else "(no file)"
    rows.append(f"| {name} | {size} | {_pct(m['accuracy'])} | "
                f"{_pct(m['balanced_accuracy'])}{ci_text} | {_pct(m['top2_accuracy'])} | "
                f"{_pct(m['malignant_sensitivity'])} | {_pct(m.get('top1_agreement'))} |")
  if any("reference" in m for m in models.values()):
    rows += ["", "Each variant's reference: " + ", ".join(
        f"{name} vs {m['reference']}" for name, m in models.items() if "reference" in m) +
             ". float32_tta8 is float32 averaged over the same 8 dihedral views as int8_tta8 "
             "(no file of its own)."]
  rows += ["", "Per-class recall (test split):", "",
           "| class | n | " + " | ".join(models) + " |",
           "|---|---:|" + "---:|" * len(models)]
  first = next(iter(models.values()))
  for label in labels:
    rows.append(f"| {label} | {first['support'][label]} | " +
                " | ".join(_pct(m["per_class_recall"][label]) for m in models.values()) + " |")
  return rows


def flips_table(paired: Optional[dict], most: int = 10) -> List[str]:
  """Markdown rows of the images whose top-1 int8 changed, the surest float32 first."""
  if not paired or not paired["flips"]:
    return []
  rows = ["", f"Flips (int8's top-1 differs from float32's; {len(paired['flips'])}, the "
          f"{min(most, len(paired['flips']))} where float32 was surest):", "",
          "| image | true | float32 top-2 | int8 top-2 | float32 margin | int8 lead over true |",
          "|---|---|---|---|---:|---:|"]
  top2 = lambda t: ", ".join(f"{label} {p:.2f}" for label, p in t)
  for f in paired["flips"][:most]:
    rows.append(f"| {f['image']} | {f['true']} | {top2(f['reference_top2'])} | "
                f"{top2(f['candidate_top2'])} | {f['reference_margin']:.3f} | "
                f"{parity.candidate_lead(f):.3f} |")
  return rows


def _balance_lines(data: dict) -> List[str]:
  """How the data report's phases balanced the classes: one line, or one per phase when
  fine-tuning had its own train.finetune_class_weight."""
  def describe(balance: str, weights: Optional[dict]) -> str:
    listed = lambda values: ", ".join(f"{k} {v:.3f}" for k, v in values.items())
    if weights:
      return f"{BALANCE_NAMES[balance]} {listed(weights)}"
    return BALANCE_NAMES[balance]

  transfer = (data.get("class_balance"), data.get("class_weights"))
  tuned = (data.get("finetune_class_balance", transfer[0]), data.get("finetune_class_weights"))
  phases = ([("", *transfer)] if tuned[0] == transfer[0] else
            [(" (transfer and QAT)", *transfer), (" (fine-tuning)", *tuned)])
  lines = []
  for name, balance, weights in phases:
    lines += ["", f"Class balance{name}: {describe(balance, weights)}."]
  return lines  # The training section says whether cRT re-fitted the classifier.


def write_report(path_json: str, path_md: str, report: dict) -> None:
  """Writes the build report as JSON and as Markdown."""
  atomic.write_json(path_json, report)
  prov = report.get("provenance") or {}
  lines = [f"# Build report: {report['name']}", "",
           "A triage aid, never a diagnosis: see the model card for intended use.", "",
           f"Built {prov.get('build_date')} by mobile-tflite-pipeline "
           f"{prov.get('pipeline_version')} at commit {prov.get('git_commit') or 'unknown'}.", ""]
  if report.get("files"):
    lines += ["| file | bytes | input | SHA-256 |", "|---|---:|---|---|"]
    lines += [f"| {f['file']} | {f['bytes']} | {f['input_shape']} | `{f['sha256']}` |"
              for f in report["files"].values()]
    lines.append("")
  data = report.get("data")
  if data:
    labels = data["labels"]
    lines += ["## Data", "", f"Format `{data['data_format']}`, {data['image_size']} px, "
              f"labels: {', '.join(labels)}.", "",
              "| split | " + " | ".join(labels) + " | total |",
              "|---|" + "---:|" * (len(labels) + 1)]
    for split, counts in data["counts"].items():
      lines.append(f"| {split} | " + " | ".join(str(counts[l]) for l in labels) +
                   f" | {data['totals'][split]} |")
    if data.get("unused"):
      lines += ["", f"Left out of training (--train_fraction): {data['unused']} images, "
                "listed as `unused` in splits.csv."]
    lines += _balance_lines(data)
    lines += ["", f"Skipped inputs: {len(data['skipped'])}; converted: "
              f"{len(data['converted'])} (details in data_report.json)."]
    for s in data["skipped"][:20]:
      lines.append(f"- skipped `{s['item']}`: {s['reason']}")
    if len(data["skipped"]) > 20:
      lines.append(f"- ... and {len(data['skipped']) - 20} more")
    for w in data.get("warnings", []):
      lines.append(f"- warning: {w}")
  phases = report.get("training", {})
  if phases:
    lines += ["", "## Training", "", "| phase | path | epochs run | best epoch | best val "
              "balanced acc. | kept epoch | time |", "|---|---|---:|---:|---:|---:|---:|"]
    for name, p in phases.items():
      lines.append(f"| {name} | {p.get('mode') or '-'} | {len(p['history'].get('loss', []))} | "
                   f"{p['best_epoch']} | {_pct(p['best_val_balanced_accuracy'])} | "
                   f"{p.get('kept_epoch', p['best_epoch'])} | {p['seconds']:.0f} s |")
  crt = report.get("crt")
  if crt:
    lines += ["", f"Classifier re-trained after fine-tuning (cRT: class-balanced logistic "
              f"regression, C = {crt['c']:g}, on the features of {crt['images']} training "
              f"images, {crt['seconds']:.0f} s). Validation balanced accuracy "
              f"{_pct(crt['val_balanced_accuracy_head'])} with the fine-tuned classifier, "
              f"{_pct(crt['val_balanced_accuracy_crt'])} with cRT (reported; the validation "
              "split is too small to choose on)."]
  if report.get("models"):
    lines += ["", "## Test split (TFLite, LiteRT interpreter)", ""]
    lines += models_table(report["models"], report["data"]["labels"])
  if report.get("gate"):
    lines += ["", "## Parity gate", "", report["gate"]["message"]]
    if report["gate"].get("referral"):
      lines += ["", report["gate"]["referral"]]
    others = report["gate"].get("other_variants", {})
    if others:
      lines += ["", "The same rule on the other variants (reported, not enforced): " + ", ".join(
          f"{name} {'passes' if ok else 'FAILS'}" for name, ok in others.items()) + "."]
    lines += flips_table(report.get("models", {}).get("int8", {}).get("paired"))
  if report.get("layer_error"):
    lines += layer_error_section(report["layer_error"])
  if report.get("referral"):
    lines += referral_section(report["referral"])
    lines += ["", "ROC of the serious-class score: `referral_roc.png`."]
  if report.get("app_runtimes"):
    lines += ["", "## App runtimes (the shipped model, as an app loads it)", ""]
    lines += [f"- {variant}: {r['message']}" for variant, runtimes in
              report["app_runtimes"].items() for r in runtimes.values()]
  seconds = report.get("stage_seconds", {})
  total = sum(seconds.values())
  per_epoch = finetune_seconds_per_epoch(report.get("training", {}))
  lines += ["", "## Stage times", ""] + ([f"Fine-tuning ran {per_epoch:.0f} s per epoch on this "
                                          "machine (quote it beside any time).", ""]
                                         if per_epoch else [])
  lines += ["| stage | seconds | share |", "|---|---:|---:|"]
  lines += [f"| {stage} | {s:.1f} | {100 * s / total:.0f}% |" for stage, s in seconds.items()]
  lines.append(f"| **total** | {total:.1f} | 100% |")
  atomic.write_text(path_md, "\n".join(lines) + "\n")


def layer_error_section(error_map: dict) -> List[str]:
  """The int8 layers losing the most SQNR against float32 (pipeline/layer_error.py)."""
  layers = error_map["layers"]
  rmse = sorted(l["rmse_over_scale"] for l in layers)
  lines = ["", "## Where int8 loses precision", "",
           f"int8 against float32, layer by layer, on {error_map['images']} test images "
           f"(`layer_error.png`; every layer in report.json). RMSE / int8 scale: median "
           f"{rmse[len(rmse) // 2]:.2f}, max {rmse[-1]:.2f} (rounding alone gives 0.29; errors "
           "accumulate with depth). The layers losing the most SQNR themselves:"]
  return lines + layer_error_table(error_map)


def layer_error_table(error_map: dict) -> List[str]:
  """The worst layers of a per-layer map as a Markdown table."""
  layers = error_map["layers"]
  lines = ["", "| layer | op | output | RMSE / scale | SQNR | SQNR lost here |",
           "|---|---|---|---:|---:|---:|"]
  lines += [f"| {l['layer']} | {l['op']} | {'x'.join(map(str, l['shape'][1:]))} | "
            f"{l['rmse_over_scale']:.2f} | {l['sqnr_db']:.1f} dB | {l['sqnr_drop_db']:.1f} dB |"
            for l in (layers[i] for i in error_map["worst"])]
  return lines


def finetune_seconds_per_epoch(training: dict) -> Optional[float]:
  """The fine-tune phase's seconds per epoch it ran (None when it ran none)."""
  phase = training.get("finetune") or {}
  ran = len(phase.get("history", {}).get("loss", [])) - phase.get("resumed_from_epoch", 0)
  return phase["seconds"] / ran if ran > 0 and phase.get("seconds") else None


def stage_time_line(report: dict) -> str:
  """The build's last log line: each stage's seconds and share, and the fine-tune speed."""
  seconds = report.get("stage_seconds", {})
  total = sum(seconds.values()) or 1.0
  per_epoch = finetune_seconds_per_epoch(report.get("training", {}))
  return (f"stage times ({total / 60:.1f} min): " + ", ".join(
      f"{stage} {s:.0f} s ({100 * s / total:.0f}%)" for stage, s in seconds.items()) +
          (f"; fine-tune {per_epoch:.0f} s per epoch" if per_epoch else ""))


def plot_training_curves(phases: Dict[str, dict], path: str) -> None:
  """Loss and validation balanced accuracy per epoch, phases side by side on one axis."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
  offset = 0
  for name, phase in phases.items():
    h = phase["history"]
    n = len(h.get("loss", []))
    if not n:
      continue
    x = np.arange(offset + 1, offset + n + 1)
    ax_loss.plot(x, h["loss"], "-o", ms=3, label=f"{name} train")
    ax_loss.plot(x, h["val_loss"], "--x", ms=4, label=f"{name} val")  # Markers: a one-epoch
    ax_acc.plot(x, h["val_balanced_accuracy"], "-o", ms=3, label=name)  # phase is one point.
    for ax in (ax_loss, ax_acc):
      ax.axvline(offset + 0.5, color="0.8", lw=1)
      ax.text(offset + 0.6, 1.0, name, transform=ax.get_xaxis_transform(), fontsize=7,
              va="top", color="0.4")  # The phase boundary says which phase starts.
    offset += n
  ax_loss.set(title="loss", xlabel="epoch (all phases)")
  ax_acc.set(title="validation balanced accuracy", xlabel="epoch (all phases)", ylim=(0, 1))
  ax_loss.legend(fontsize=8)
  ax_acc.legend(fontsize=8)
  atomic.save_figure(fig, path)
  plt.close(fig)


def plot_confusion_matrices(matrices: Dict[str, list], labels: Sequence[str], path: str) -> None:
  """Row-normalized confusion matrices (recall on the diagonal), one panel per model."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  k = len(labels)
  # constrained layout keeps the right panel's "true" label clear of the left panel.
  fig, axes = plt.subplots(1, len(matrices), figsize=(0.6 * k * len(matrices) + 4, 0.55 * k + 2),
                           squeeze=False, layout="constrained")
  for ax, (name, cm) in zip(axes[0], matrices.items()):
    cm = np.asarray(cm, np.float64)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(k):
      for j in range(k):
        ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center", fontsize=7,
                color="white" if norm[i, j] > 0.5 else "black")
    ax.set(title=f"{name} (test)", xticks=range(k), yticks=range(k), xlabel="predicted",
           ylabel="true")
    ax.set_xticklabels(labels, rotation=45, ha="right", fontsize=8)
    ax.set_yticklabels(labels, fontsize=8)
  atomic.save_figure(fig, path)
  plt.close(fig)


def referral_section(referral: Optional[dict]) -> list:
  """The model card's referral paragraph and table (empty without a referral threshold)."""
  if not referral:
    return []
  ci = lambda r, k: (f" ({100 * r['ci95'][k][0]:.1f}-{100 * r['ci95'][k][1]:.1f})"
                     if r.get("ci95") else "")
  lines = ["", "## Referral threshold", "",
           f"Refer the person to a clinician when the {referral['score']} is at least "
           f"**{referral['threshold']:.4f}** (`{REFERRAL_FILE}`). The threshold was fit on the "
           f"{referral['fit_on']} to refer {referral['target_sensitivity']:.0%} of new serious "
           f"cases like them (it referred {referral['validation']['sensitivity']:.1%} of its "
           f"{referral['validation']['positives']}: the split-conformal rank)"
           + ("" if referral.get("enough_cases", referral.get("guaranteed", True)) else
              ", though they are too few for that promise, so it refers all of them")
           + ". On the test split (95% intervals):", "",
           "| model | sensitivity | specificity | ROC AUC |", "|---|---:|---:|---:|"]
  for name, r in referral["test"].items():
    auc = f"{r['roc_auc']:.3f}" if r["roc_auc"] is not None else "n/a"
    lines.append(f"| {name} | {100 * r['sensitivity']:.1f}%{ci(r, 'sensitivity')} | "
                 f"{100 * r['specificity']:.1f}%{ci(r, 'specificity')} | {auc} |")
  lines += ["", "A referral is a prompt to seek care, never a diagnosis; a photo that is not "
            "referred can still be serious."]
  return lines
