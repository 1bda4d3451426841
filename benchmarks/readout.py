r"""Readout: does a finished build's backbone or its classifier limit it, and does choosing
the fine-tune epoch on the validation split help?

For each --build_dir (a finished build that kept its fine-tune checkpoints):
- shipped: `model_float.keras` as the build wrote it (its kept fine-tune epoch and, with
  --crt, its re-fit classifier): the reference every change is paired against;
- two fine-tune epochs of the same run, each with its fine-tuned classifier (`head`) and two
  readouts of its frozen pooled features:
  - best_val: the epoch with the highest validation balanced accuracy;
  - last: the schedule's last epoch (no choice made on the validation split's handful of
    rare-class images);
  - tau_norm (Kang et al., ICLR 2020): the head's per-class weight vectors scaled to unit
    norm (tau = 1, bias dropped), which undoes the larger weights frequent classes grow;
  - crt (same paper; what the build's crt stage does, `pipeline.train.crt`): a class-balanced
    logistic regression on the training split's features over --train_views dihedral views
    of each image, L2 strength 1/--crt_c (repeatable: one crt row per value).
Balanced accuracy on the validation split, and on the test split with one view and with the
mean over the 8 dihedral views; over several builds, mean (min-max) and the paired change
against shipped. Nothing here is fit on the test split.

  python -m benchmarks.readout --build_dir=build/ham1 --build_dir=build/ham2 \
      --build_dir=build/ham3 --output_json=readout.json
"""

import hashlib
import os
import time
from typing import Callable, Dict, List, Sequence

import numpy as np
from absl import app
from absl import flags

from benchmarks import common

FLAGS = flags.FLAGS


def define_flags() -> None:
  """Defined when run, not on import: the tests import benchmark functions into one process,
  where two benchmarks' flags of the same name (--model, --build_dir) would clash."""
  flags.DEFINE_multi_string("build_dir", [], "A finished build's output directory (repeatable).")
  flags.DEFINE_integer("train_views", 1, "Dihedral views of each training image that cRT is fit "
                       "on (1-8; 1 = the image as is).", lower_bound=1, upper_bound=8)
  from pipeline.config import TrainConfig  # pylint: disable=g-import-not-at-top
  flags.DEFINE_multi_float("crt_c", [TrainConfig.crt_c], "Inverse L2 strength of the cRT "
                           "classifier (default: the build's); repeat it to compare values on "
                           "the same features.", lower_bound=1e-6)
  flags.DEFINE_multi_enum("epoch", list(EPOCHS), list(EPOCHS), "Fine-tune epochs to read out "
                          "(repeatable; each costs the features of every split).")
  flags.DEFINE_string("output_json", "readout.json", "JSON report path.")
  flags.DEFINE_string("output_md", "", "Markdown report path (default: beside the JSON).")


SHIPPED = "shipped"
EPOCHS = ("best_val", "last")  # pipeline.config.KEEP_EPOCHS, in the order of the table.


def load_model(build_dir: str, epoch: str = SHIPPED):
  """The build's float model as shipped, or at its best_val or last fine-tune epoch (with the
  fine-tuned classifier). A build of several fine-tunes (--finetune_runs) gives the mean of
  its runs' weights at that epoch, as the build averaged them."""
  from pipeline import config as config_lib  # pylint: disable=g-import-not-at-top
  from pipeline.stages.training import FLOAT_MODEL  # pylint: disable=g-import-not-at-top
  from pipeline.tf_compat import keras  # pylint: disable=g-import-not-at-top
  from pipeline.train import fit, phases, soup  # pylint: disable=g-import-not-at-top
  model = keras.models.load_model(os.path.join(build_dir, FLOAT_MODEL))
  if epoch != SHIPPED:
    runs = config_lib.BuildConfig.load(
        os.path.join(build_dir, config_lib.CONFIG_FILE)).train.finetune_runs
    weights = []
    for run in range(runs):
      fit.restore_epoch(model, build_dir, phases.finetune_phase_name(run), epoch)
      weights.append(model.get_weights())
    if runs > 1:
      model.set_weights(soup.average_weights(weights))
  return model


def features(model, pixels: np.ndarray, normalization, views: int,
             batch_size: int = 64) -> np.ndarray:
  """Pooled backbone features [views, N, D] of `views` dihedral views of the images, batch by
  batch (`pipeline.runner.keras_predict`)."""
  from pipeline import model as model_lib  # pylint: disable=g-import-not-at-top
  from pipeline import preprocessing  # pylint: disable=g-import-not-at-top
  from pipeline.runner import keras_predict  # pylint: disable=g-import-not-at-top
  extractor = model_lib.feature_extractor(model)
  return np.stack([keras_predict(extractor, pixels, normalization, batch_size, view)
                   for view in preprocessing.DIHEDRAL[:views]])


def _softmax(z: np.ndarray) -> np.ndarray:
  e = np.exp(z - z.max(axis=-1, keepdims=True))
  return e / e.sum(axis=-1, keepdims=True)


def head_classifier(model) -> Callable[[np.ndarray], np.ndarray]:
  """The model's own classifier: features [N, D] -> probabilities [N, K]."""
  kernel, bias = model.get_layer("classifier").get_weights()
  return lambda x: _softmax(x @ kernel + bias)


def crt_classifier(train_x: np.ndarray, train_y: np.ndarray, num_classes: int, c: float
                   ) -> Callable[[np.ndarray], np.ndarray]:
  """The cRT classifier fit on the training features train_x [V, N, D] (every view of an
  image carries its label): features [N, D] -> probabilities [N, K]."""
  from pipeline.train import crt  # pylint: disable=g-import-not-at-top
  kernel, bias = crt.fit_classifier(train_x.reshape(-1, train_x.shape[-1]),
                                    np.tile(train_y, len(train_x)), num_classes, c)
  return lambda x: _softmax(x @ kernel + bias)


def readouts(model, train_x: np.ndarray, train_y: np.ndarray, cs: Sequence[float]
             ) -> Dict[str, Callable[[np.ndarray], np.ndarray]]:
  """name -> (features [N, D] -> probabilities [N, K]): head, tau_norm, and crt fit on the
  training features train_x [V, N, D] at each inverse L2 strength in cs (named "crt" for one
  value, "crt C=<c>" for several)."""
  kernel = model.get_layer("classifier").get_weights()[0]
  unit = kernel / np.linalg.norm(kernel, axis=0, keepdims=True)
  out = {"head": head_classifier(model), "tau_norm": lambda x: _softmax(x @ unit)}
  for c in cs:
    out["crt" if len(cs) == 1 else f"crt C={c:g}"] = crt_classifier(train_x, train_y,
                                                                    kernel.shape[1], c)
  return out


def score_readout(readout, feats: dict, split: dict) -> dict:
  """{"val", "test", "test_tta8"} balanced accuracy of one readout."""
  from pipeline import metrics  # pylint: disable=g-import-not-at-top
  per_view = [readout(x) for x in feats["test"]]
  return {"val": metrics.argmax_balanced_accuracy(split["val"].labels, readout(feats["val"][0])),
          "test": metrics.argmax_balanced_accuracy(split["test"].labels, per_view[0]),
          "test_tta8": metrics.argmax_balanced_accuracy(split["test"].labels,
                                                        np.mean(per_view, axis=0))}


def score_model(model, split: dict, normalization) -> dict:
  """{"val", "test", "test_tta8"} of the model's own classifier (`score_readout` of its head,
  on one view of the validation images and the 8 dihedral views of the test images)."""
  feats = {name: features(model, split[name].pixels(), normalization, views)
           for name, views in (("val", 1), ("test", 8))}
  return score_readout(head_classifier(model), feats, split)


def cached_scores(build_dir: str, path: str, score: Callable[[object], dict]) -> dict:
  """score(the build's float model as shipped), kept at `path` (JSON) with the model file's
  digest: a build's figures are computed once, not on every run, and again when the model
  changes."""
  from pipeline import atomic  # pylint: disable=g-import-not-at-top
  from pipeline.stages.training import FLOAT_MODEL  # pylint: disable=g-import-not-at-top
  with open(os.path.join(build_dir, FLOAT_MODEL), "rb") as f:
    digest = hashlib.sha256(f.read()).hexdigest()
  if os.path.exists(path):
    cached = atomic.read_json(path, "the benchmark's cached scores")
    if cached.get("model_sha256") == digest:
      return cached["scores"]
  scores = score(load_model(build_dir))
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  atomic.write_json(path, {"model_sha256": digest, "scores": scores})
  return scores


def build_data(build_dir: str, files: Sequence[str] = ()):
  """(BuildConfig, DataBundle, {"train", "val", "test": Split}) of a finished build that has
  its float model and `files`.

  Raises:
    PipelineError: not a finished build, or one without `files`.
  """
  from pipeline import config as config_lib  # pylint: disable=g-import-not-at-top
  from pipeline import data as data_lib  # pylint: disable=g-import-not-at-top
  from pipeline.stages.training import FLOAT_MODEL  # pylint: disable=g-import-not-at-top
  needed = config_lib.build_files(
      build_dir, [config_lib.CONFIG_FILE, "splits.csv", FLOAT_MODEL, *files], "fine-tuning")
  config = config_lib.BuildConfig.load(needed[0])
  bundle = data_lib.load(config.data, config.seed, split_file=needed[1],
                         synthetic_root=os.path.join(build_dir, "synthetic_data"))
  return config, bundle, {name: bundle.splits[name] for name in ("train", "val", "test")}


def score_build(build_dir: str, train_views: int, cs: Sequence[float],
                epochs: Sequence[str] = EPOCHS, progress=common.progress) -> dict:
  """{"build", "n", "rows": {"shipped" or "epoch/readout": {"val", "test", "test_tta8"}}}."""
  config, _, split = build_data(build_dir)
  norm = config.model.normalization
  rows = {}
  for epoch in (SHIPPED,) + tuple(e for e in EPOCHS if e in epochs):
    t0 = time.time()
    model = load_model(build_dir, epoch)
    feats = {}
    for name, s in split.items():
      views = {"train": train_views, "val": 1, "test": 8}[name]
      if epoch == SHIPPED and name == "train":
        continue  # The shipped model is scored as it is; nothing is fit on it.
      feats[name] = features(model, s.pixels(), norm, views)
      progress(f"readout: {build_dir}: {epoch} model, features of {len(s)} {name} images x "
               f"{views} views ({time.time() - t0:.0f} s)")
    if epoch == SHIPPED:
      rows[SHIPPED] = score_readout(head_classifier(model), feats, split)
    else:
      for name, readout in readouts(model, feats["train"], split["train"].labels, cs).items():
        rows[f"{epoch}/{name}"] = score_readout(readout, feats, split)
    progress(f"readout: {build_dir}: {epoch} model scored in {time.time() - t0:.0f} s; test "
             "balanced accuracy " + ", ".join(f"{key} {row['test']:.4f}" for key, row in
                                             rows.items() if key.startswith(epoch)))
  return {"build": build_dir, "n": {s: len(v) for s, v in split.items()}, "rows": rows}


def summarize(builds: List[dict], base: str = SHIPPED) -> Dict[str, dict]:
  """Per row and figure: mean, min, max over builds, and the mean paired change against
  the `base` row (the shipped readout) with its min and max."""
  out = {}
  for key in builds[0]["rows"]:
    out[key] = {}
    for fig in builds[0]["rows"][key]:
      v = np.array([b["rows"][key][fig] for b in builds])
      d = v - np.array([b["rows"][base][fig] for b in builds])
      out[key][fig] = {"mean": float(v.mean()), "min": float(v.min()), "max": float(v.max()),
                       "change_mean": float(d.mean()), "change_min": float(d.min()),
                       "change_max": float(d.max())}
  return out


def markdown(payload: dict) -> List[str]:
  builds = payload["builds"]
  lines = ["# Readout: fine-tune epoch x classifier, on finished builds", "",
           f"{len(builds)} build(s): " + ", ".join(f"`{b['build']}`" for b in builds) +
           f". cRT: class-balanced logistic regression on {payload['train_views']} view(s) of "
           f"each training image, C = {', '.join(f'{c:g}' for c in payload['crt_c'])}. "
           "TTA8: mean over the 8 dihedral views. Balanced accuracy; change: paired against "
           "shipped (the build's model_float.keras), mean (min to max).", ""]
  return lines + paired_table("readout", payload["summary"], builds)


def member_gains(builds: List[dict], key: str, members: Sequence[str], figure: str
                 ) -> List[float]:
  """Per build, row `key`'s figure minus the mean of its `members` rows' figures, in points
  (a soup or an ensemble against the models it combines)."""
  return [100 * (b["rows"][key][figure] - np.mean([b["rows"][m][figure] for m in members]))
          for b in builds]


def signed_range(values: Sequence[float]) -> str:
  """"+1.2 (+1.0 to +1.8)": mean (min to max) of changes in points."""
  return f"{np.mean(values):+.1f} ({min(values):+.1f} to {max(values):+.1f})"


def percent_range(s: dict) -> str:
  """"72.3% (71.8-73.1)": mean (min-max) of a summarize() figure, in percent."""
  return f"{100 * s['mean']:.1f}% ({100 * s['min']:.1f}-{100 * s['max']:.1f})"


def change_range(s: dict) -> str:
  """"+1.2 (+0.5 to +2.6)": a summarize() figure's paired change, in points."""
  return (f"{100 * s['change_mean']:+.1f} ({100 * s['change_min']:+.1f} to "
          f"{100 * s['change_max']:+.1f})")


def paired_table(first_column: str, summary: Dict[str, dict], builds: List[dict]) -> List[str]:
  """Markdown rows of `summarize(builds)`: per row key, test, test TTA8 and val as mean
  (min-max) with the paired change against shipped, then each build's test figure."""
  lines = [f"| {first_column} | test | change | test TTA8 | change | val | " +
           " | ".join(os.path.basename(b["build"].rstrip("/")) for b in builds) + " |",
           "|---|" + "---:|" * (5 + len(builds))]
  pct, chg = percent_range, change_range
  for key, figs in summary.items():
    lines.append(f"| {key} | {pct(figs['test'])} | {chg(figs['test'])} | "
                 f"{pct(figs['test_tta8'])} | {chg(figs['test_tta8'])} | {pct(figs['val'])} | "
                 + " | ".join(f"{100 * b['rows'][key]['test']:.1f}%" for b in builds) + " |")
  return lines


def measure_from_flags() -> dict:
  from pipeline.errors import PipelineError  # pylint: disable=g-import-not-at-top
  if not FLAGS.build_dir:
    raise PipelineError("give at least one --build_dir=BUILD (a finished build)")
  builds = []
  for i, build_dir in enumerate(FLAGS.build_dir, 1):
    builds.append(score_build(build_dir, FLAGS.train_views, FLAGS.crt_c, FLAGS.epoch))
    common.progress(f"readout: {i}/{len(FLAGS.build_dir)} builds done")
  return {"train_views": FLAGS.train_views, "crt_c": FLAGS.crt_c, "builds": builds,
          "summary": summarize(builds)}


def main(argv: List[str]) -> None:
  common.main("benchmarks.readout", argv, measure_from_flags, markdown, FLAGS.output_json,
              FLAGS.output_md)


if __name__ == "__main__":
  define_flags()
  app.run(main)
