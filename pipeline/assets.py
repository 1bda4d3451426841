"""Assets stage: the drop-in android_assets/ folder (model, labels, model card, snippets)."""

import os
from typing import Dict, Optional, Sequence

from pipeline import atomic
from pipeline import labels as labels_lib
from pipeline import model_card as model_card_lib
from pipeline import report as report_lib
from pipeline.config.export import model_file_name
from pipeline.shipped import (APP_README_FILE, DISCLAIMER, FLOAT16_MODEL_FILE,  # noqa: F401
                              LABELS_FILE, MODEL_CARD_FILE, MODEL_FILE, REFERRAL_FILE,
                              SHIPPED_FILES, TTA_MODEL_FILE)


def write_assets(assets_dir: str, model_bytes: bytes, labels: Sequence[str],
                 model_card: str, readme: str, referral: Optional[dict] = None,
                 extra_models: Optional[Dict[str, bytes]] = None) -> None:
  """Replaces `assets_dir` atomically with model.tflite, labels.txt, MODEL_CARD.md, README.md
  and, when given, referral.json and `extra_models` ({file name: bytes}).

  The new folder is built beside the old one and swapped in, so a failed or killed build
  never leaves a partial android_assets/.
  """
  with atomic.replace_directory(assets_dir) as staging:
    if referral:
      atomic.write_json(os.path.join(staging, REFERRAL_FILE), referral)
    atomic.write_bytes(os.path.join(staging, MODEL_FILE), model_bytes)
    for name, blob in (extra_models or {}).items():
      atomic.write_bytes(os.path.join(staging, name), blob)
    labels_lib.write_labels(os.path.join(staging, LABELS_FILE), labels)
    atomic.write_text(os.path.join(staging, MODEL_CARD_FILE), model_card)
    atomic.write_text(os.path.join(staging, APP_README_FILE), readme)


_PHASE_NAMES = {"transfer": "transfer learning", "finetune": "fine-tuning",
                "qat": "quantization-aware training"}


def training_summary(training: Dict[str, dict], crt: Optional[dict] = None) -> str:
  """"transfer learning (cached_features), fine-tuning (...), then ..." from the report's
  phases and, when the build re-fit its classifier, its crt entry."""
  parts = []
  for name in _PHASE_NAMES:
    if name not in training:
      continue
    mode = training[name].get("mode")
    parts.append(f"{_PHASE_NAMES[name]} ({mode})" if mode else _PHASE_NAMES[name])
    if name == "finetune" and crt:
      parts.append(f"the classifier re-fit on the frozen features with every class weighted "
                   f"equally (cRT, C = {crt['c']:g})")
  if not parts:
    return "none recorded"
  return ", ".join(parts[:-1]) + (", then " if len(parts) > 1 else "") + parts[-1]


def _render(template: str, **values) -> str:
  """One of pipeline/templates/ (package data), rendered."""
  import jinja2  # pylint: disable=g-import-not-at-top
  env = jinja2.Environment(
      loader=jinja2.FileSystemLoader(os.path.join(os.path.dirname(__file__), "templates")),
      trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
      undefined=jinja2.StrictUndefined, autoescape=False)  # Markdown, not HTML.
  return env.get_template(template).render(
      disclaimer=DISCLAIMER, model_file=MODEL_FILE, tta_file=TTA_MODEL_FILE,
      labels_file=LABELS_FILE, referral_file=REFERRAL_FILE, model_card_file=MODEL_CARD_FILE,
      **values)


def model_card(info: Dict[str, str], report: dict, display_names: Sequence[str],
               latency: Optional[list], tta: Optional[dict] = None) -> str:
  """Renders MODEL_CARD.md (pipeline/templates/model_card.md.j2) from the build report; `tta`
  is `tta_summary(...)` when the build ships model_tta8.tflite (None when it does not)."""
  data = report["data"]
  models = report["models"]
  int8, ref = models["int8"], models["float32"]
  shipped = [v for v in report.get("app_runtimes", {})
             if v in SHIPPED_FILES and (v != "int8_tta8" or tta)]
  texts = labels_lib.metadata_defaults(data["data_format"])  # Card text of this dataset.
  return model_card_lib.front_matter(info, report, texts) + _render(
      "model_card.md.j2", info=info, data=data, alpha=report["config"]["model"]["alpha"],
      training=training_summary(report.get("training", {}), report.get("crt")),
      size_mb=int8["size_bytes"] / 1e6, tensors=report["tensors"]["int8"],
      texts=texts,
      classes=list(zip(data["labels"], display_names)),
      metrics_table="\n".join(report_lib.models_table({"float32": ref, "int8": int8},
                                                      data["labels"])),
      malignant=(None if int8.get("malignant_sensitivity") is None else
                 (ref["malignant_sensitivity"], int8["malignant_sensitivity"])),
      referral="\n".join(report_lib.referral_section(report.get("referral"))),
      gate=(report.get("gate") or {}).get("message"), tta=tta and tta["text"],
      runtimes=[(SHIPPED_FILES[v], r["message"]) for v in shipped
                for r in report["app_runtimes"][v].values()],
      latency=[{**r, "name": os.path.basename(r["model"])} for r in latency or []],
      provenance=report.get("provenance", {}),
      shipped=report.get("files", {}).get("int8", {}))


def tta_summary(report: dict, latency: Optional[list]) -> Optional[dict]:
  """What an app developer needs to choose between model.tflite and model_tta8.tflite:
  balanced accuracy of each on the test split, and their latency ratio (or None when the build
  has no int8_tta8 model)."""
  models = report.get("models", {})
  if "int8_tta8" not in models:
    return None
  single, tta = models["int8"]["balanced_accuracy"], models["int8_tta8"]["balanced_accuracy"]
  median = {os.path.basename(r["model"]): r["median_ms"] for r in latency or []
            if r["threads"] == 1}
  single_ms, tta_ms = (median.get(model_file_name(v)) for v in ("int8", "int8_tta8"))
  ratio = tta_ms / single_ms if single_ms and tta_ms else None
  text = (f"`{TTA_MODEL_FILE}` runs the same int8 network on the 8 rotations and mirror images "
          "of the photo inside one invoke and averages them (dermoscopy has no canonical "
          f"orientation). Test-split balanced accuracy: {100 * tta:.1f}% against "
          f"{100 * single:.1f}% for `{MODEL_FILE}` ({100 * (tta - single):+.1f} points)"
          + (f", at {ratio:.1f}x its latency on this machine" if ratio else "") + ". Same "
          "input, output and metadata: load it the same way. Pick it where the latency budget "
          "allows (a photo taken and then classified once, not a live camera feed). The "
          f"referral threshold (`{REFERRAL_FILE}`) was fit for `{MODEL_FILE}` only.")
  return {"single": single, "tta": tta, "latency_ratio": ratio, "text": text}


def model_choices(report: dict, latency: Optional[list], variants) -> list:
  """The shipped files to choose between: file, test balanced accuracy, median ms on this
  machine (1 thread) and what runs it; int8 first, then each shipped variant of `variants`."""
  models = report.get("models", {})
  median = {os.path.basename(r["model"]): r["median_ms"] for r in latency or []
            if r["threads"] == 1}
  runs_on = {"int8": "Android and iOS: CPU (XNNPACK), NNAPI; Task Library, MediaPipe Tasks",
             "int8_tta8": "the same, where 8x the compute fits the latency budget",
             "float16": "iOS Core ML delegate (float models only), GPU delegates"}
  rows = []
  for v in ["int8"] + [v for v in variants if v]:
    if v in models:
      rows.append({"file": SHIPPED_FILES[v], "balanced_accuracy": models[v]["balanced_accuracy"],
                   "median_ms": median.get(model_file_name(v)), "runs_on": runs_on[v]})
  return rows


def readme(tensors: dict, labels: Sequence[str], referral: Optional[dict] = None,
           tta: Optional[dict] = None, choices: Optional[list] = None,
           normalization=None) -> str:
  """Renders android_assets/README.md (pipeline/templates/app_readme.md.j2) with snippets
  that match the real file and types; `choices` is `model_choices(...)`, `normalization`
  the model's (the Swift interpreter API cannot read it from the metadata)."""
  ios = next((c for c in choices or [] if c["file"] == FLOAT16_MODEL_FILE), None)
  return _render("app_readme.md.j2", t=tensors, labels=labels, referral=referral,
                 tta=tta and tta["text"], choices=choices or [], ios=ios,
                 norm=normalization)
