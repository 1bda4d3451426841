"""Helpers shared by the benchmark entry points (output writing)."""

import os
from typing import List

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
