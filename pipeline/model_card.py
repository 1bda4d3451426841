"""The model card in the two standard shapes tools read: the YAML header of a Hugging Face
model card (MODEL_CARD.md starts with it) and model_card.json in the field names of Google's
Model Card Toolkit schema (v0.0.2). Both come from the build report, as MODEL_CARD.md does."""

import re
from typing import Dict, List, Sequence

from pipeline.shipped import DISCLAIMER, LABELS_FILE, MODEL_FILE

MCT_SCHEMA_VERSION = "0.0.2"
# Hugging Face ids of the ImageNet MobileNetV2 checkpoints a build's backbone starts from.
_BASE_MODELS = {1.0: "google/mobilenet_v2_1.0_224", 1.4: "google/mobilenet_v2_1.4_224"}
_SCORED = ("int8", "float32")  # The shipped model and its reference, in every card.


def license_id(info: Dict[str, str], texts: Dict[str, str]) -> str:
  """An SPDX id for the weights: the user's --set=export.metadata.license when it is one
  (a single token), else the data format's (defaults.json), else "other"."""
  if info["license"] != texts["license"] and re.fullmatch(r"[A-Za-z0-9.+-]+", info["license"]):
    return info["license"].lower()
  return texts.get("license_id", "other") if info["license"] == texts["license"] else "other"


def _base_model(report: dict):
  model = report["config"]["model"]
  return _BASE_MODELS.get(model["alpha"]) if model["weights"] not in ("", "none") else None


def front_matter(info: Dict[str, str], report: dict, texts: Dict[str, str]) -> str:
  """The YAML header of MODEL_CARD.md, in the fields Hugging Face model cards use (license,
  datasets, metrics, base_model, library_name, tags, and model-index with the test figures)."""
  import yaml  # pylint: disable=g-import-not-at-top
  data, models = report["data"], report["models"]
  spdx = license_id(info, texts)
  header = {"license": spdx}
  if spdx == "other":
    header.update(license_name="see-model-card", license_link="MODEL_CARD.md")
  header.update({"library_name": "tflite", "pipeline_tag": "image-classification",
                 "tags": ["image-classification", "tflite", "int8", "quantization-aware-training",
                          "mobilenet_v2", *texts.get("tags", [])],
                 "datasets": [texts.get("dataset", data["data_format"])],
                 "metrics": ["accuracy", "balanced_accuracy", "recall"]})
  if _base_model(report):
    header["base_model"] = _base_model(report)
  metrics = [{"type": metric, "value": round(models[v][metric], 4), "name": f"{v} {label}"}
             for v in _SCORED for metric, label in (("accuracy", "accuracy"),
                                                    ("balanced_accuracy", "balanced accuracy"))]
  referral = report.get("referral")
  if referral:
    point = referral["test"]["int8"]
    metrics += [{"type": "recall", "value": round(point["sensitivity"], 4),
                 "name": f"int8 referral sensitivity ({'+'.join(referral['classes'])})"}]
  header["model-index"] = [{"name": info["name"], "results": [{
      "task": {"type": "image-classification", "name": "Image classification"},
      "dataset": {"name": f"{texts.get('dataset', data['data_format'])} (held-out test "
                          f"split, {data['totals']['test']} images)",
                  "type": data["data_format"], "split": "test"},
      "metrics": metrics}]}]
  return "---\n" + yaml.safe_dump(header, sort_keys=False, allow_unicode=True) + "---\n\n"


def _proportion_ci(successes: int, n: int) -> List[float]:
  """Clopper-Pearson 95% interval of a proportion (scipy)."""
  from scipy import stats  # pylint: disable=g-import-not-at-top
  if n == 0:
    return [0.0, 1.0]
  ci = stats.binomtest(successes, n).proportion_ci(0.95, method="exact")
  return [ci.low, ci.high]


def _metric(kind: str, value: float, ci, slice_name: str = "") -> dict:
  out = {"type": kind, "value": f"{value:.4f}"}
  if slice_name:
    out["slice"] = slice_name
  if ci is not None:
    out["confidence_interval"] = {"lower_bound": f"{ci[0]:.4f}", "upper_bound": f"{ci[1]:.4f}"}
  return out


def performance_metrics(report: dict) -> List[dict]:
  """Overall and per-class figures of int8 and float32 on the test split, each with its 95%
  interval (bootstrap for the overall ones, Clopper-Pearson for per-class recall)."""
  out = []
  for v in _SCORED:
    m = report["models"][v]
    for kind in ("accuracy", "balanced_accuracy"):
      out.append(_metric(f"{v} {kind}", m[kind], m.get("ci95", {}).get(kind), "test split"))
    for label, recall in m["per_class_recall"].items():
      n = int(m["support"][label])
      out.append(_metric(f"{v} recall", recall, _proportion_ci(round(recall * n), n),
                         f"test split, class={label}"))
  referral = report.get("referral")
  if referral:
    point = referral["test"]["int8"]
    for kind in ("sensitivity", "specificity"):
      out.append(_metric(f"int8 referral {kind}", point[kind], point["ci95"][kind],
                         f"test split, serious = {'+'.join(referral['classes'])}"))
  return out


def toolkit_json(info: Dict[str, str], report: dict, texts: Dict[str, str],
                 display_names: Sequence[str]) -> dict:
  """model_card.json in Model Card Toolkit field names (schema v0.0.2)."""
  data, tensors, config = report["data"], report["tensors"]["int8"], report["config"]
  norm = report["normalization"]
  spdx = license_id(info, texts)
  return {
      "schema_version": MCT_SCHEMA_VERSION,
      "model_details": {
          "name": info["name"], "overview": f"{info['description']} {DISCLAIMER}",
          "owners": [{"name": info["author"]}],
          "version": {"name": info["version"],
                      "date": report.get("provenance", {}).get("build_date", "")},
          "licenses": [{"custom_text": info["license"]} if spdx == "other"
                       else {"identifier": spdx}],
          "path": MODEL_FILE},
      "model_parameters": {
          "model_architecture": f"MobileNetV2 (alpha {config['model']['alpha']}) with a softmax "
                                f"head; full-integer int8 from quantization-aware training",
          "data": [{"name": f"{split} split", "description": f"{data['totals'][split]} images "
                    f"of {texts.get('dataset', data['data_format'])}; per class: "
                    + ", ".join(f"{k} {n}" for k, n in data["counts"][split].items())}
                   for split in ("train", "val", "test")],
          "input_format": f"{tensors['input_dtype']} {tensors['input_shape']} RGB pixels "
                          f"(0-255); the model normalizes (x - mean) / std itself",
          "input_format_map": [{"key": "mean", "value": str(norm["mean"])},
                               {"key": "std", "value": str(norm["std"])}],
          "output_format": f"{tensors['output_dtype']} {tensors['output_shape']} class "
                           f"probabilities in {LABELS_FILE} order",
          "output_format_map": [{"key": label, "value": name}
                                for label, name in zip(data["labels"], display_names)]},
      "quantitative_analysis": {"performance_metrics": performance_metrics(report)},
      "considerations": {
          "users": [{"description": "App developers shipping the model in an Android or iOS "
                                    "app (TFLite Task Library, MediaPipe Tasks)."},
                    {"description": "QA signing off that the int8 model matches float32."}],
          "use_cases": [{"description": texts["intended_use"]}],
          "limitations": [{"description": texts["data_limitation"]},
                          {"description": DISCLAIMER}],
          "tradeoffs": [{"description": (report.get("gate") or {}).get("message", "")}],
          "ethical_considerations": [{
              "name": "A serious lesion scored as benign delays its examination.",
              "mitigation_strategy": "Every prediction carries the disclaimer; the referral "
                                     "threshold (referral.json) refers a stated share of "
                                     "serious cases, measured on lesions no decision used."}]},
  }
