"""Assets stage: the drop-in android_assets/ folder (model, labels, model card, snippets)."""

import os
from typing import Dict, Optional, Sequence

from pipeline import atomic
from pipeline import labels as labels_lib
from pipeline import report as report_lib
from pipeline.config.export import model_file_name

from pipeline.shipped import (DISCLAIMER, LABELS_FILE, MODEL_FILE, REFERRAL_FILE,  # noqa: F401
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
    atomic.write_text(os.path.join(staging, "MODEL_CARD.md"), model_card)
    atomic.write_text(os.path.join(staging, "README.md"), readme)


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


def model_card(info: Dict[str, str], report: dict, display_names: Sequence[str],
               latency: Optional[list], tta: Optional[dict] = None) -> str:
  """Renders MODEL_CARD.md from the build report; `tta` is `tta_summary(...)` when the build
  ships model_tta8.tflite (None when it does not)."""
  data = report["data"]
  labels = data["labels"]
  models = report["models"]
  int8, ref = models["int8"], models["float32"]
  texts = labels_lib.metadata_defaults(data["data_format"])  # Card text of this dataset.
  lines = [f"# Model card: {info['name']}", "", f"> {DISCLAIMER}", "",
           "## Model", "", info["description"], "",
           f"- Version {info['version']}; author: {info['author']}.",
           f"- License: {info['license']}",
           f"- Architecture: MobileNetV2 (alpha {report['config']['model']['alpha']}) with a "
           f"new softmax head. Training: "
           f"{training_summary(report.get('training', {}), report.get('crt'))}.",
           f"- File: `model.tflite`, full-integer int8, {int8['size_bytes'] / 1e6:.2f} MB; input "
           f"{report['tensors']['int8']['input_dtype']} "
           f"{report['tensors']['int8']['input_shape']} RGB pixels (0-255), output "
           f"{report['tensors']['int8']['output_dtype']} probabilities in `labels.txt` order.",
           "", "## Intended use", "", texts["intended_use"], "",
           "## Classes", "", "| id | display name |", "|---|---|"]
  lines += [f"| {l} | {d} |" for l, d in zip(labels, display_names)]
  lines += ["", "## Data and splits", "",
            f"Format `{data['data_format']}`, images resized to {data['image_size']} px. Splits "
            "are stratified by class and grouped by lesion where the data has lesion ids, so "
            "no lesion is in two splits.", "",
            "| split | " + " | ".join(labels) + " | total |",
            "|---|" + "---:|" * (len(labels) + 1)]
  for split, counts in data["counts"].items():
    lines.append(f"| {split} | " + " | ".join(str(counts[l]) for l in labels) +
                 f" | {data['totals'][split]} |")
  lines += ["", "## Metrics (test split, TFLite files, LiteRT interpreter)", ""]
  lines += report_lib.models_table({"float32": ref, "int8": int8}, labels)
  if int8.get("malignant_sensitivity") is not None:
    lines += ["", f"Malignant-group sensitivity (mel, bcc, akiec predicted as any of them): "
              f"float32 {ref['malignant_sensitivity']:.3f}, "
              f"int8 {int8['malignant_sensitivity']:.3f}."]
  lines += report_lib.referral_section(report.get("referral"))
  gate = report.get("gate")
  if gate:
    lines += ["", "## Parity gate (int8 against float32)", "", gate["message"]]
  if tta:
    lines += ["", f"## The 8-view variant (`{TTA_MODEL_FILE}`)", "", tta["text"]]
  shipped = [v for v in report.get("app_runtimes", {})
             if v == "int8" or (tta and v in SHIPPED_FILES)]
  if shipped:
    lines += ["", "## Checked in the app runtimes", "",
              "The build loaded each shipped file as an app does and compared every answer "
              "with the LiteRT interpreter's:", ""]
    lines += [f"- `{SHIPPED_FILES[v]}`: {r['message']}"
              for v in shipped for r in report["app_runtimes"][v].values()]
  if latency:
    lines += ["", "## Latency", "", "On the build machine's CPU (LiteRT interpreter, XNNPACK), "
              "median of interleaved runs; phones differ, measure on the target device.", "",
              "| model | threads | median ms | p90 ms |", "|---|---:|---:|---:|"]
    for r in latency:
      lines.append(f"| {os.path.basename(r['model'])} | {r['threads']} | {r['median_ms']:.2f} | "
                   f"{r['p90_ms']:.2f} |")
  prov, shipped = report.get("provenance", {}), report.get("files", {}).get("int8", {})
  lines += ["", "## Provenance", "",
            f"- Built {prov.get('build_date')} by mobile-tflite-pipeline "
            f"{prov.get('pipeline_version')}, source commit {prov.get('git_commit') or 'unknown'}.",
            f"- `model.tflite` SHA-256: `{shipped.get('sha256')}` (check: `sha256sum "
            "model.tflite`); input shape " + str(shipped.get("input_shape")) + "."]
  lines += ["", "## Limitations", "",
            f"- {texts['data_limitation']}",
            "- Only the classes listed exist for the model: anything else (e.g. a squamous cell "
            "carcinoma, a rash) is forced into one of them.",
            "- Rare classes have few test images: their recall has wide confidence intervals.",
            "- Not validated prospectively or clinically.", "", f"**{DISCLAIMER}**", ""]
  return "\n".join(lines)


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


def readme(tensors: dict, labels: Sequence[str], referral: Optional[dict] = None,
           tta: Optional[dict] = None) -> str:
  """Renders android_assets/README.md with snippets that match the real file and types."""
  t = tensors
  files = "" if not referral else (
      f"\n| `{REFERRAL_FILE}` | the referral threshold on P({' + '.join(referral['classes'])}) "
      "and its measured sensitivity and specificity |")
  if tta:
    files += (f"\n| `{TTA_MODEL_FILE}` | the same classifier over 8 rotated and mirrored views, "
              "averaged: more accurate, slower (below) |")
  return (_readme_body(t, labels, files) +
          (f"\n## `{MODEL_FILE}` or `{TTA_MODEL_FILE}`\n\n{tta['text']}\n" if tta else "") +
          (_referral_snippets(referral) if referral else "") +
          "\nShow the user the disclaimer with every result.\n")


def _referral_snippets(referral: dict) -> str:
  """README section: how an app applies referral.json (all class scores are needed)."""
  classes = ", ".join(f'"{c}"' for c in referral["classes"])
  return f"""
## Referral (`{REFERRAL_FILE}`)

Refer the user to a clinician when the summed probability of {', '.join(referral['classes'])}
is at least `threshold` ({referral['threshold']:.4f}); on the test split that referred
{100 * referral['test']['sensitivity']:.1f}% of the serious cases at a specificity of
{100 * referral['test']['specificity']:.1f}% (MODEL_CARD.md). Ask the classifier for every class
(no `maxResults` limit) so that the sum sees all of them.

```kotlin
val referral = JSONObject(context.assets.open("{REFERRAL_FILE}").bufferedReader().readText())
val serious = referral.getJSONArray("classes").let {{ a -> (0 until a.length()).map {{ a.getString(it) }} }}
// Task Library: categories of classify(...) with the default maxResults (all classes).
val score = categories.filter {{ it.label in serious }}.sumOf {{ it.score.toDouble() }}
val refer = score >= referral.getDouble("threshold")
```

```swift
let data = try Data(contentsOf: Bundle.main.url(forResource: "referral", withExtension: "json")!)
let referral = try JSONSerialization.jsonObject(with: data) as! [String: Any]
let serious = Set(referral["classes"] as! [String])  // {classes}
let categories = result.classificationResult.classifications.first?.categories ?? []
let score = categories.filter {{ serious.contains($0.categoryName ?? "") }}.reduce(0.0) {{ $0 + Double($1.score) }}
let refer = score >= (referral["threshold"] as! Double)
```
"""


def _readme_body(t: dict, labels: Sequence[str], files: str) -> str:
  return f"""# android_assets

Drop-in files for an Android or iOS app. {DISCLAIMER}

| file | what |
|---|---|
| `{MODEL_FILE}` | int8 MobileNetV2 classifier with TFLite metadata (labels, display names, normalization) |
| `{LABELS_FILE}` | the {len(labels)} class ids in output order (also embedded in the model) |
| `MODEL_CARD.md` | data, metrics, latency, limitations and intended use |{files}

Input: `{t['input_dtype']}` tensor of shape {t['input_shape']}, RGB pixels 0-255 (the APIs below
resize and convert the bitmap for you). Output: `{t['output_dtype']}` tensor of shape
{t['output_shape']}, one probability per line of `{LABELS_FILE}`. The APIs read labels and
display names from the model's metadata: no label file needs to be shipped separately.

## Android, TFLite Task Library (`org.tensorflow:tensorflow-lite-task-vision`)

Copy `{MODEL_FILE}` into `app/src/main/assets/`.

```kotlin
import org.tensorflow.lite.support.image.TensorImage
import org.tensorflow.lite.task.vision.classifier.ImageClassifier

val options = ImageClassifier.ImageClassifierOptions.builder()
    .setMaxResults(5)
    .build()
val classifier = ImageClassifier.createFromFileAndOptions(context, "{MODEL_FILE}", options)
val categories = classifier.classify(TensorImage.fromBitmap(bitmap))[0].categories
for (c in categories) Log.i("triage", "${{c.label}} (${{c.displayName}}): ${{c.score}}")
```

## Android, MediaPipe Tasks (`com.google.mediapipe:tasks-vision`)

```kotlin
import com.google.mediapipe.framework.image.BitmapImageBuilder
import com.google.mediapipe.tasks.core.BaseOptions
import com.google.mediapipe.tasks.vision.imageclassifier.ImageClassifier

val options = ImageClassifier.ImageClassifierOptions.builder()
    .setBaseOptions(BaseOptions.builder().setModelAssetPath("{MODEL_FILE}").build())
    .setMaxResults(5)
    .build()
val classifier = ImageClassifier.createFromOptions(context, options)
val result = classifier.classify(BitmapImageBuilder(bitmap).build())
val top = result.classificationResult().classifications()[0].categories()[0]
Log.i("triage", "${{top.categoryName()}} (${{top.displayName()}}): ${{top.score()}}")
```

## iOS, MediaPipe Tasks (`MediaPipeTasksVision` pod)

Add `{MODEL_FILE}` to the app target.

```swift
import MediaPipeTasksVision

let options = ImageClassifierOptions()
options.baseOptions.modelAssetPath = Bundle.main.path(forResource: "model", ofType: "tflite")!
options.maxResults = 5
let classifier = try ImageClassifier(options: options)
let result = try classifier.classify(image: try MPImage(uiImage: image))
if let top = result.classificationResult.classifications.first?.categories.first {{
  print("\\(top.categoryName ?? "") (\\(top.displayName ?? "")): \\(top.score)")
}}
```
"""
