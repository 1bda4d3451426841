"""What the benchmark entry points share: one main() body and atomic report writing."""

import os
import sys
from typing import Any, Callable, List, NamedTuple

import numpy as np

from pipeline import atomic


def define_data_flags(flags) -> None:
  """The dataset flags of a benchmark that reads labeled images: --build_dir, or the data
  flags of pipeline.build; defined by the entry point that calls this."""
  from pipeline.config import DATA_FORMATS  # pylint: disable=g-import-not-at-top
  flags.DEFINE_string("build_dir", "", "A build's output directory: its config.json names the "
                      "dataset and its splits.csv the split (replaces the data flags and "
                      "--split_file); its model_*.tflite files are the default --model list.")
  flags.DEFINE_string("split_file", "", "A build's splits.csv, to score one split only.")
  flags.DEFINE_enum("data_format", "ham10000", DATA_FORMATS, "Dataset layout (as pipeline.build).")
  flags.DEFINE_string("data_dir", "", "Image root.")
  flags.DEFINE_string("metadata_csv", "", "Metadata or pixel CSV.")
  flags.DEFINE_string("hmnist_labels", "", "hmnist_csv label table (as pipeline.build).")


class Dataset(NamedTuple):
  """What a benchmark scores on: the data, the split file (or none) and, for a synthetic
  build, where its images are."""
  config: Any  # pipeline.config.DataConfig
  split_file: str
  synthetic_root: str


def dataset_from_flags(values) -> Dataset:
  """The dataset of the flags from `define_data_flags`, checked.

  Raises:
    PipelineError: --build_dir together with data flags, or a bad build directory.
  """
  from pipeline import config as config_lib  # pylint: disable=g-import-not-at-top
  from pipeline.errors import PipelineError  # pylint: disable=g-import-not-at-top
  if values.build_dir:
    given = [f"--{n}" for n in ("data_format", "data_dir", "metadata_csv", "hmnist_labels",
                                "split_file") if values[n].present]
    if given:
      raise PipelineError(f"--build_dir names the dataset and split; drop {', '.join(given)}")
    config = config_lib.BuildConfig.load(os.path.join(values.build_dir, config_lib.CONFIG_FILE))
    return Dataset(config.data, os.path.join(values.build_dir, "splits.csv"),
                   os.path.join(values.build_dir, "synthetic_data"))
  config = config_lib.DataConfig(data_format=values.data_format, data_dir=values.data_dir,
                                 metadata_csv=values.metadata_csv,
                                 hmnist_labels=values.hmnist_labels)
  config.validate()
  return Dataset(config, values.split_file, "")


def build_split(build_dir: str, split: str = "test"):
  """(BuildConfig, Split): a finished build's recipe and one split of its data."""
  config, parts = build_splits(build_dir, (split,))
  return config, parts[split]


def build_splits(build_dir: str, names=("test",)):
  """(BuildConfig, {name: Split}): a finished build's recipe and some splits of its data,
  decoded in one pass; each split's labels index the build's labels.txt (the order its models
  embed), not the classes the splits happen to hold.

  Raises:
    PipelineError: not a build's output directory, or a class the build's labels.txt lacks.
  """
  from pipeline import config as config_lib  # pylint: disable=g-import-not-at-top
  from pipeline import data as data_lib  # pylint: disable=g-import-not-at-top
  from pipeline import labels as labels_lib  # pylint: disable=g-import-not-at-top
  from pipeline.errors import PipelineError  # pylint: disable=g-import-not-at-top
  config_path = os.path.join(build_dir, config_lib.CONFIG_FILE)
  if not os.path.isfile(config_path):
    raise PipelineError(f"--build_dir={build_dir}: no {config_lib.CONFIG_FILE}; give the output "
                        "directory of a build")
  config = config_lib.BuildConfig.load(config_path)
  labels = labels_lib.read_labels(os.path.join(build_dir, labels_lib.FILE_NAME))
  try:
    bundle = data_lib.load(config.data, config.seed,
                           split_file=os.path.join(build_dir, "splits.csv"),
                           synthetic_root=os.path.join(build_dir, "synthetic_data"),
                           only_splits=tuple(names), labels=labels)
  except data_lib.UnknownClasses as e:
    raise PipelineError(f"--build_dir={build_dir}: its {'/'.join(names)} images have classes "
                        f"{e.classes} that its labels.txt ({', '.join(labels)}) lacks; the "
                        "directory holds files of different builds") from None
  return config, bundle.splits


def build_models(build_dir: str,
                 variants=("int8", "int8_tta8", "int8_ptq", "float16")) -> List[str]:
  """The build's .tflite files of `variants` that exist."""
  from pipeline.config import model_file_name  # pylint: disable=g-import-not-at-top
  paths = [os.path.join(build_dir, model_file_name(v)) for v in variants]
  return [p for p in paths if os.path.isfile(p)]


def exported_models(build_dir: str, variants=("int8", "int8_tta8", "int8_ptq", "float16")
                    ) -> List[str]:
  """`build_models`, refusing a build that has exported none of them yet.

  Raises:
    PipelineError: no model of `variants` in the build directory.
  """
  from pipeline.errors import PipelineError  # pylint: disable=g-import-not-at-top
  paths = build_models(build_dir, variants)
  if not paths:
    raise PipelineError(f"--build_dir={build_dir}: the build has no exported model yet; give a "
                        "build that got past its export stage, or finish this one "
                        "(pipeline.build --resume)")
  return paths


def work_folder(work_root: str, build_dir: str) -> str:
  """A build's folder under a benchmark's --work_dir: one per build, wherever the build is
  given from."""
  import hashlib  # pylint: disable=g-import-not-at-top
  path = os.path.abspath(build_dir)
  return os.path.join(work_root,
                      f"{os.path.basename(path)}-{hashlib.sha1(path.encode()).hexdigest()[:8]}")


def progress(message: str) -> None:
  """A progress line, shown at once even when stdout is a file (nohup ... > log)."""
  print(message, flush=True)


def write_outputs(payload: dict, markdown: List[str], output_json: str, output_md: str) -> None:
  """Writes the JSON and Markdown reports atomically (making their folders) and says where
  they are."""
  md_path = output_md or os.path.splitext(output_json)[0] + ".md"
  for path in (output_json, md_path):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  atomic.write_json(output_json, payload)
  atomic.write_text(md_path, "\n".join(markdown) + "\n")
  print(f"wrote {output_json} and {md_path}")


def main(prog: str, argv: List[str], measure: Callable[[], dict],
         markdown: Callable[[dict], List[str]], output_json: str, output_md: str) -> None:
  """The body of every benchmark's main(): measure, write JSON + Markdown, print the
  Markdown; a user error (PipelineError) exits with one line naming the benchmark."""
  from absl import app  # pylint: disable=g-import-not-at-top
  from absl import logging  # pylint: disable=g-import-not-at-top
  from pipeline.errors import PipelineError  # pylint: disable=g-import-not-at-top
  logging.set_verbosity(logging.WARNING)  # TensorFlow's checkpoint INFO lines drown progress.
  # TensorFlow (which tflite-support's metadata reader imports too) prints a dozen CUDA and
  # XLA registration lines on import: import it once here, quietly, as the build does.
  from pipeline import tf_compat  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  try:
    payload = measure()
    lines = markdown(payload)
    write_outputs(payload, lines, output_json, output_md)
    print("\n".join(lines))
  except PipelineError as e:
    sys.exit(f"{prog}: error: {e}")


def save_plot(fig, path: str) -> None:
  """Saves a matplotlib figure to PATH (write-then-rename, making its folder) and closes it."""
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  atomic.save_figure(fig, path)
  plt.close(fig)


def interval(values: List[float], bounds=(0.0, 1.0)) -> dict:
  """Mean, min-max and the 95% t-interval of the mean over folds (None with one fold), the
  interval clipped to `bounds` (a share by default; None for a difference)."""
  from scipy import stats  # pylint: disable=g-import-not-at-top
  v = np.asarray(values, float)
  ci = None
  if len(v) > 1 and np.ptp(v) == 0:
    ci = [float(v[0])] * 2  # Equal folds: the t-interval has zero width.
  elif len(v) > 1:
    ci = [float(np.clip(x, *bounds) if bounds else x)
          for x in stats.t.interval(0.95, len(v) - 1, loc=v.mean(), scale=stats.sem(v))]
  return {"mean": float(v.mean()), "min": float(v.min()), "max": float(v.max()), "ci95": ci,
          "folds": len(v)}
