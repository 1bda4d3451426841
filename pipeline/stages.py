"""Runs the build's stages in order from a BuildConfig; resumable, flag-free."""

import dataclasses
import datetime
import hashlib
import json
import os
import shutil
import tempfile
import time
from typing import Callable, Dict, Optional

import numpy as np

from pipeline import __version__
from pipeline import assets as assets_lib
from pipeline import atomic
from pipeline import data as data_lib
from pipeline import evaluate as evaluate_lib
from pipeline import export as export_lib
from pipeline import labels as labels_lib
from pipeline import model as model_lib
from pipeline import parity
from pipeline import referral as referral_lib
from pipeline import report as report_lib
from pipeline import tflite_metadata
from pipeline import train as train_lib
from pipeline.config import STAGES, BuildConfig, stage_index
from pipeline.errors import PipelineError
from pipeline.preprocessing import MOBILENET_V2, Normalization
from pipeline.tf_compat import keras, tf

TASK_LIBRARY_IMAGES = 8


class _Log:
  """Timestamped progress lines on stdout."""

  def __init__(self):
    self.t0 = time.time()

  def __call__(self, message: str) -> None:
    elapsed = int(time.time() - self.t0)
    print(f"[{elapsed // 60:3d}:{elapsed % 60:02d}] {message}", flush=True)


class _State:
  """Which stages finished, persisted in build_state.json for --resume."""

  def __init__(self, path: str, resume: bool, config: BuildConfig):
    self.path = path
    self.data = {"completed": [], "stage_seconds": {}}
    if resume and os.path.exists(path):
      with open(path, encoding="utf-8") as f:
        self.data = json.load(f)
      saved = self.data.get("config")
      current = config.to_dict()
      for key in ("data", "model", "train"):
        if saved and saved.get(key) != current.get(key):
          raise PipelineError(f"--resume: the {key} settings differ from the interrupted build "
                              f"in {os.path.dirname(path)}; resume with the same flags "
                              f"(--flagfile={os.path.join(os.path.dirname(path), 'flags.txt')})")
    self.data["config"] = config.to_dict()

  def done(self, stage: str) -> bool:
    return stage in self.data["completed"]

  def finish(self, stage: str, seconds: float) -> None:
    if stage not in self.data["completed"]:
      self.data["completed"].append(stage)
    self.data["stage_seconds"][stage] = self.data["stage_seconds"].get(stage, 0.0) + seconds
    atomic.write_json(self.path, self.data)

  def reset_from(self, stage: str) -> None:
    later = STAGES[stage_index(stage):]
    self.data["completed"] = [s for s in self.data["completed"] if s not in later]
    atomic.write_json(self.path, self.data)


def split_pixels(split: data_lib.Split, image_size: int,
                 indices: Optional[np.ndarray] = None) -> np.ndarray:
  """uint8 images of a split (from memory, or decoded from disk when streamed)."""
  if indices is None:
    indices = np.arange(len(split))
  if split.images is not None:
    return split.images[indices]
  from pipeline import images as images_lib  # pylint: disable=g-import-not-at-top
  return np.stack([images_lib.load_rgb(split.paths[i], image_size)[0] for i in indices])


def metadata_info(config: BuildConfig, labels, image_size: int) -> Dict[str, str]:
  """Name, description, version, author and license: flags over metadata/defaults.json."""
  path = os.path.join(labels_lib.METADATA_DIR, "defaults.json")
  with open(path, encoding="utf-8") as f:
    defaults = json.load(f)
  # A data format may override the templates (the synthetic demo is not a skin model).
  defaults.update(defaults.pop("by_data_format", {}).get(config.data.data_format, {}))
  values = {"dataset": config.data.data_format, "alpha": config.model.alpha, "size": image_size,
            "classes": ", ".join(labels), "pipeline_version": __version__}
  m = config.metadata
  info = {
      "name": m.name or defaults["name"].format(**values),
      "description": m.description or defaults["description"].format(**values),
      "version": m.version or defaults["version"].format(**values),
      "author": m.author or defaults["author"],
      "license": m.license or defaults["license"],
  }
  if "not a diagnostic device" not in info["description"].lower():
    info["description"] = info["description"].rstrip() + " Not a diagnostic device."
  return info


def run(config: BuildConfig, log: Optional[Callable[[str], None]] = None) -> dict:
  """Runs the build up to `config.stop_after`.

  Args:
    config: a validated configuration.
    log: progress printer (default: timestamped lines on stdout).

  Returns:
    The build report (also written as report.json and report.md).

  Raises:
    PipelineError: bad input, a failed check, or a failed parity gate.
  """
  log = log or _Log()
  out = config.output_dir
  os.makedirs(out, exist_ok=True)
  if not config.resume:
    # A fresh build must not pick up features or checkpoints of an earlier one.
    for stale in ("cache", "checkpoints"):
      shutil.rmtree(os.path.join(out, stale), ignore_errors=True)
  state = _State(os.path.join(out, "build_state.json"), config.resume, config)
  config.save(os.path.join(out, "config.json"))
  last = stage_index(config.stop_after)
  normalization = MOBILENET_V2
  keras.utils.set_random_seed(config.seed)
  if config.deterministic:
    tf.config.experimental.enable_op_determinism()  # Process-wide; there is no way back.
  report: dict = {"name": os.path.basename(os.path.abspath(out)), "config": config.to_dict(),
                  "normalization": {"mean": list(normalization.mean),
                                    "std": list(normalization.std)},
                  "pipeline_version": __version__,
                  "started": datetime.datetime.now().isoformat(timespec="seconds"),
                  "stage_seconds": state.data["stage_seconds"], "training": {}}
  prior = os.path.join(out, "report.json")
  if config.resume and os.path.exists(prior):
    with open(prior, encoding="utf-8") as f:
      report["training"] = json.load(f).get("training", {})

  def save_report():
    report["stage_seconds"] = state.data["stage_seconds"]
    report_lib.write_report(os.path.join(out, "report.json"), os.path.join(out, "report.md"),
                            report)

  def finish(stage: str, seconds: float) -> bool:
    """Records a finished stage and saves the report; True when the build stops after it."""
    state.finish(stage, seconds)
    save_report()
    return last <= stage_index(stage)

  # ---- data
  t0 = time.time()
  split_file = os.path.join(out, "splits.csv") if config.resume and os.path.exists(
      os.path.join(out, "splits.csv")) else ""
  previous_labels = None
  if config.resume and os.path.exists(os.path.join(out, "labels.txt")):
    previous_labels = labels_lib.read_labels(os.path.join(out, "labels.txt"))
  bundle = data_lib.run_data_stage(config.data, config.seed, out, split_file=split_file)
  labels = labels_lib.read_labels(os.path.join(out, "labels.txt"))  # The one label source.
  if previous_labels is not None and previous_labels != labels:
    raise PipelineError(f"--resume: the data now gives labels {labels}, the interrupted build "
                        f"had {previous_labels}; the dataset changed, start a fresh build")
  config.referral.check_labels(config.data.data_format, labels)  # Before hours of training.
  report["data"] = bundle.report
  counts = ", ".join(f"{k} {len(s)}" for k, s in bundle.splits.items())
  log(f"data: {sum(len(s) for s in bundle.splits.values())} images ({counts}), "
      f"{len(labels)} labels, {len(bundle.report['skipped'])} skipped, "
      f"{len(bundle.report['converted'])} converted")
  if finish("data", time.time() - t0):
    return report

  strategy = train_lib.get_strategy(config.train.strategy)
  common = dict(bundle=bundle, config=config.train, normalization=normalization, work_dir=out,
                seed=config.seed, augment=config.data.augment,
                class_balance=config.data.class_balance,
                log=log)

  # ---- transfer
  transfer_weights = os.path.join(out, "checkpoints", "transfer_final_weights")
  float_path = os.path.join(out, "model_float.keras")
  with strategy.scope():
    model = model_lib.build_classifier(len(labels), config.data.image_size, config.model.alpha,
                                       config.model.weights, config.model.dropout,
                                       seed=config.seed)
  if state.done("transfer") and os.path.exists(transfer_weights + ".index"):
    model.load_weights(transfer_weights).expect_partial()
    log("transfer: reusing the finished stage (--resume)")
  else:
    if config.model.weights == "none":
      train_split = bundle.splits["train"]
      sample = np.random.default_rng(config.seed).permutation(len(train_split))[:128]
      model_lib.init_batchnorm_statistics(
          model, normalization.apply_np(split_pixels(train_split, bundle.image_size, sample)))
    t0 = time.time()
    with strategy.scope():
      result = train_lib.run_transfer(model, resume=config.resume, **common)
    model.save_weights(transfer_weights)
    report["training"]["transfer"] = vars(result)
    finish("transfer", time.time() - t0)
  if last <= stage_index("transfer"):
    return report

  # ---- finetune
  if state.done("finetune") and os.path.exists(float_path):
    with strategy.scope():
      model = keras.models.load_model(float_path)
    log("finetune: reusing the finished stage (--resume)")
  else:
    t0 = time.time()
    with strategy.scope():
      result = train_lib.run_finetune(model, resume=config.resume, **common)
    _save_keras(model, float_path)
    report["training"]["finetune"] = vars(result)
    finish("finetune", time.time() - t0)
  if last <= stage_index("finetune"):
    return report

  # ---- qat
  qat_weights = os.path.join(out, "checkpoints", "qat_final_weights")
  train_split = bundle.splits["train"]
  calibration = export_lib.calibration_pixels(
      lambda idx: split_pixels(train_split, bundle.image_size, idx), train_split.labels,
      config.export.calibration_images, config.seed)
  batches = [normalization.apply_np(calibration[i:i + config.train.batch_size])
             for i in range(0, len(calibration), config.train.batch_size)]
  with strategy.scope():
    qat_model = train_lib.quantize_model(model, config.train.finetune_layers, normalization,
                                         calibration_batches=batches)
  if state.done("qat") and os.path.exists(qat_weights + ".index"):
    qat_model.load_weights(qat_weights).expect_partial()
    train_lib.pin_input_range(qat_model, normalization)
    log("qat: reusing the finished stage (--resume)")
  else:
    t0 = time.time()
    with strategy.scope():
      result = train_lib.run_qat(qat_model, resume=config.resume, float_model=model, **common)
    qat_model.save_weights(qat_weights)
    report["training"]["qat"] = vars(result)
    finish("qat", time.time() - t0)
  if report["training"]:
    report_lib.plot_training_curves(report["training"], os.path.join(out, "training_curves.png"))
  if last <= stage_index("qat"):
    return report

  # ---- export (always rerun on resume: seconds, and it keeps the files consistent)
  t0 = time.time()
  blobs = export_lib.export_variants(model, qat_model, calibration, normalization,
                                     config.export.io_dtype, config.export.variants)
  tensors = {}
  for variant, blob in blobs.items():
    if variant.startswith("int8"):
      # The shipped model must take raw pixels; PTQ's range comes from its calibration set.
      tensors[variant] = export_lib.check_int8(blob, config.export.io_dtype, normalization,
                                               require_raw_pixels=variant == "int8")
    else:
      tensors[variant] = export_lib.tensor_summary(blob)
    atomic.write_bytes(os.path.join(out, export_lib.file_name(variant)), blob)
  report["tensors"] = tensors
  report["calibration_images"] = int(len(calibration))
  log(f"export: {', '.join(f'{v} {len(b) / 1e6:.2f} MB' for v, b in blobs.items())} "
      f"(calibrated on {len(calibration)} training images)")
  if finish("export", time.time() - t0):
    return report

  # ---- metadata (+ the Task Library check an app would do)
  t0 = time.time()
  display = labels_lib.display_names(labels, config.metadata.display_names)
  info = metadata_info(config, labels, config.data.image_size)
  for variant in list(blobs):
    blobs[variant] = tflite_metadata.write(blobs[variant], labels, display, normalization, info)
    tflite_metadata.verify(blobs[variant], labels, display, normalization, info,
                           where=export_lib.file_name(variant))
    atomic.write_bytes(os.path.join(out, export_lib.file_name(variant)), blobs[variant])
  report["metadata"] = info
  report["task_library"] = _task_library_check(blobs["int8"], bundle, normalization, out)
  log(f"metadata: written and read back on {len(blobs)} models; "
      f"{report['task_library']['message']}")
  if finish("metadata", time.time() - t0):
    return report

  # ---- evaluate
  t0 = time.time()
  test = bundle.splits["test"]
  report["models"], test_probs = evaluate_lib.evaluate_models(
      blobs, split_pixels(test, bundle.image_size), test.labels, labels, normalization,
      keys=test.keys, paired_rounds=config.gate.bootstrap_rounds, seed=config.seed)
  report_lib.plot_confusion_matrices(
      {name: report["models"][name]["confusion_matrix"] for name in ("float32", "int8")},
      labels, os.path.join(out, "confusion_matrix.png"))
  for name, m in report["models"].items():
    log(f"evaluate: {name:9s} accuracy {m['accuracy']:.4f}  balanced {m['balanced_accuracy']:.4f}"
        + (f"  agreement {m['top1_agreement']:.4f}" if "top1_agreement" in m else ""))
  serious = config.referral.classes(config.data.data_format, labels)
  if serious:
    report["referral"] = _referral(config, bundle, blobs, test_probs, labels, normalization, out)
    r = report["referral"]
    log(f"evaluate: referral threshold {r['threshold']:.3f} on P({'+'.join(serious)}) for "
        f"{r['target_sensitivity']:.0%} validation sensitivity; test sensitivity / specificity: "
        + ", ".join(f"{n} {t['sensitivity']:.3f} / {t['specificity']:.3f}"
                    for n, t in r["test"].items()))
  if finish("evaluate", time.time() - t0):
    return report

  # ---- gate
  gate = parity.verdict(report["models"]["int8"]["paired"], config.gate)
  report["gate"] = {**dataclasses.asdict(gate), "message": gate.message(),
                    "enforced": config.gate.enabled,
                    # The same rule applied to the other variants, for QA (never enforced).
                    "other_variants": {
                        name: parity.verdict(m["paired"], config.gate, name).passed
                        for name, m in report["models"].items()
                        if name not in ("int8", "float32")}}
  if report.get("referral"):
    report["gate"]["referral"] = referral_lib.parity_sentence(report["referral"])
  save_report()
  log(gate.message())
  if report["gate"].get("referral"):
    log(report["gate"]["referral"])
  if config.gate.enabled:
    parity.check_gate(gate, config.assets_dir)
  if finish("gate", 0.0):
    return report

  # ---- assets
  t0 = time.time()
  from pipeline import latency  # pylint: disable=g-import-not-at-top
  lat = latency.measure([os.path.join(out, "model_int8.tflite"),
                         os.path.join(out, "model_float32.tflite")], threads=[1], runs=30,
                        warmup_runs=5)
  report["latency"] = lat
  referral_file = None
  if report.get("referral"):
    referral_file = referral_lib.shipped_file(report["referral"],
                                              hashlib.sha256(blobs["int8"]).hexdigest(),
                                              assets_lib.DISCLAIMER)
    atomic.write_json(os.path.join(out, referral_lib.FILE_NAME), referral_file)
  card = assets_lib.model_card(info, report, display, lat)
  assets_lib.write_assets(config.assets_dir, blobs["int8"], labels, card,
                          assets_lib.readme(tensors["int8"], labels, referral_file),
                          referral_file)
  atomic.write_text(os.path.join(out, "MODEL_CARD.md"), card)
  finish("assets", time.time() - t0)
  log(f"assets: {config.assets_dir} updated (model.tflite, labels.txt, MODEL_CARD.md, README.md)")
  log(f"done: reports in {os.path.join(out, 'report.md')}")
  return report


def _referral(config: BuildConfig, bundle: data_lib.DataBundle, blobs: Dict[str, bytes],
              test_probs: Dict[str, np.ndarray], labels, normalization: Normalization,
              out: str) -> dict:
  """Fits the referral threshold on the validation split and scores it on test (+ ROC plot)."""
  val = bundle.splits["val"]
  scored = {name: blobs[name] for name in ("int8", "float32")}
  val_probs = evaluate_lib.predict_models(scored, split_pixels(val, bundle.image_size), labels,
                                          normalization)
  classes = config.referral.classes(config.data.data_format, labels)
  referral = referral_lib.evaluate(
      val_probs, val.labels, {n: test_probs[n] for n in scored}, bundle.splits["test"].labels,
      list(labels), classes, config.referral.sensitivity,
      bootstrap_rounds=config.gate.bootstrap_rounds // 2, seed=config.seed)
  referral_lib.plot_roc({n: test_probs[n] for n in scored}, bundle.splits["test"].labels,
                        list(labels), referral, os.path.join(out, "referral_roc.png"))
  return referral


def _save_keras(model: keras.Model, path: str) -> None:
  tmp = path[:-len(".keras")] + ".tmp.keras"
  model.save(tmp)
  os.replace(tmp, path)


def _task_library_check(model_bytes: bytes, bundle: data_lib.DataBundle,
                        normalization: Normalization, out: str) -> dict:
  """Classifies a few test images with Task Library and with LiteRT; top-1 must agree.

  Images are written at the model's input size, so Task Library's own resize is a no-op
  and both paths see the same pixels.

  Raises:
    PipelineError: Task Library fails, or its top-1 differs from the interpreter's.
  """
  from PIL import Image  # pylint: disable=g-import-not-at-top
  from pipeline import task_library_check  # pylint: disable=g-import-not-at-top
  from pipeline.runner import LiteRunner  # pylint: disable=g-import-not-at-top
  test = bundle.splits["test"]
  idx = np.linspace(0, len(test) - 1, min(TASK_LIBRARY_IMAGES, len(test))).astype(int)
  pixels = split_pixels(test, bundle.image_size, idx)
  with tempfile.TemporaryDirectory(dir=out) as tmp:
    model_path = os.path.join(tmp, "model.tflite")
    with open(model_path, "wb") as f:
      f.write(model_bytes)
    paths = []
    for i, img in enumerate(pixels):
      paths.append(os.path.join(tmp, f"{i}.png"))
      Image.fromarray(img).save(paths[-1])
    task = task_library_check.classify(model_path, paths)
  probs = LiteRunner(model_bytes, normalization).predict(pixels)
  # Quantized scores can tie; Task Library's pick is correct if it holds the max score.
  agree = [float(probs[i, t["index"]]) >= float(probs[i].max()) - 1e-6 for i, t in
           enumerate(task)]
  result = {"images": len(task), "agree": int(sum(agree)),
            "message": f"Task Library ImageClassifier top-1 equals the interpreter's on "
                       f"{sum(agree)}/{len(task)} test images",
            "labels_seen": sorted({t["label"] for t in task})}
  if not all(agree):
    bad = agree.index(False)
    raise PipelineError(f"Task Library's top-1 ({task[bad]['label']}) differs from the "
                        f"interpreter's ({bundle.labels[int(probs[bad].argmax())]}) on test image "
                        f"{test.keys[idx[bad]]}: the model's metadata or input encoding is wrong")
  return result
