"""What the benchmark entry points share: one main() body and atomic report writing."""

import os
import sys
from typing import Callable, List

from pipeline import atomic


def define_data_flags(flags) -> None:
  """The dataset flags of a benchmark that reads labeled images (as pipeline.build has
  them), defined by the entry point that calls this."""
  from pipeline.config import DATA_FORMATS  # pylint: disable=g-import-not-at-top
  flags.DEFINE_enum("data_format", "ham10000", DATA_FORMATS, "Dataset layout (as pipeline.build).")
  flags.DEFINE_string("data_dir", "", "Image root.")
  flags.DEFINE_string("metadata_csv", "", "Metadata or pixel CSV.")
  flags.DEFINE_string("hmnist_labels", "", "hmnist_csv label table (as pipeline.build).")


def data_config_from_flags(values):
  """The validated DataConfig of the flags from `define_data_flags`."""
  from pipeline.config import DataConfig  # pylint: disable=g-import-not-at-top
  config = DataConfig(data_format=values.data_format, data_dir=values.data_dir,
                      metadata_csv=values.metadata_csv, hmnist_labels=values.hmnist_labels)
  config.validate()
  return config


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
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  try:
    payload = measure()
    lines = markdown(payload)
    write_outputs(payload, lines, output_json, output_md)
    print("\n".join(lines))
  except PipelineError as e:
    sys.exit(f"{prog}: error: {e}")
