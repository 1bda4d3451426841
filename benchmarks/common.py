"""What the benchmark entry points share: one main() body and atomic report writing."""

import os
import sys
from typing import Callable, List

from pipeline import atomic


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
