"""Writes files and directories so that readers never see them half-written (and reads the
JSON ones back with one clear error)."""

import contextlib
import json
import os
import shutil
import tempfile
from typing import Any, Callable, Iterator


def _file_mode() -> int:
  umask = os.umask(0)
  os.umask(umask)
  return 0o666 & ~umask


FILE_MODE = _file_mode()


def write_bytes(path: str, data: bytes) -> None:
  """Writes `data` to `path` via a temp file in the same directory and a rename.

  Args:
    path: destination file.
    data: the full content.
  """
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix="-" + os.path.basename(path))
  try:
    os.fchmod(fd, FILE_MODE)  # mkstemp makes 0600; give what open() would under the umask.
    with os.fdopen(fd, "wb") as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    with contextlib.suppress(FileNotFoundError):
      os.unlink(tmp)
    raise


def write_with(path: str, writer: Callable[[str], Any]) -> None:
  """Calls `writer(tmp)` for a temp path beside `path` with the same suffix (Keras and numpy
  insist on theirs), then renames it to `path`.

  Args:
    path: destination file.
    writer: writes the whole file to the path it is given.
  """
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  stem, suffix = os.path.splitext(os.path.basename(path))
  tmp = os.path.join(directory, f".tmp-{stem}-{os.getpid()}{suffix}")
  try:
    writer(tmp)
    os.replace(tmp, path)
  except BaseException:
    with contextlib.suppress(FileNotFoundError):
      os.unlink(tmp)
    raise


def save_figure(fig, path: str) -> None:
  """Saves a matplotlib figure as a PNG, atomically."""
  write_with(path, lambda tmp: fig.savefig(tmp, dpi=110, bbox_inches="tight"))


def write_text(path: str, text: str) -> None:
  """Writes UTF-8 `text` to `path` atomically."""
  write_bytes(path, text.encode("utf-8"))


def write_json(path: str, obj: Any) -> None:
  """Writes `obj` as indented JSON to `path` atomically."""
  write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def read_json(path: str, what: str) -> Any:
  """The JSON document at `path`.

  Raises:
    PipelineError: "PATH: cannot read WHAT (why)" when it is missing or not JSON.
  """
  from pipeline.errors import PipelineError  # pylint: disable=g-import-not-at-top
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except (OSError, ValueError) as e:
    raise PipelineError(f"{path}: cannot read {what} ({e})") from None


def _json_default(obj: Any) -> Any:
  # numpy scalars and arrays show up in metrics; JSON has no such types.
  if hasattr(obj, "tolist"):
    return obj.tolist()
  if hasattr(obj, "item"):
    return obj.item()
  raise TypeError(f"not JSON serializable: {type(obj).__name__}")


@contextlib.contextmanager
def replace_directory(path: str) -> Iterator[str]:
  """Yields a staging directory that replaces `path` only if the block succeeds.

  The new content is built beside the old one and swapped in with two renames, so a
  failed or killed build leaves the old directory (or, at worst between the two
  renames, `path + ".old"`) intact, never a partial one.

  Args:
    path: the directory to replace.

  Yields:
    The staging directory to fill.
  """
  path = os.path.abspath(path)
  parent = os.path.dirname(path)
  os.makedirs(parent, exist_ok=True)
  old = path + ".old"
  if not os.path.exists(path) and os.path.isdir(old):
    os.replace(old, path)  # An earlier run was killed between the two renames.
  prefix = "." + os.path.basename(path) + ".new-"
  for name in os.listdir(parent):
    if name.startswith(prefix):  # Staging left by a killed run: never swapped in, so junk.
      shutil.rmtree(os.path.join(parent, name), ignore_errors=True)
  staging = tempfile.mkdtemp(dir=parent, prefix="." + os.path.basename(path) + ".new-")
  os.chmod(staging, 0o755)
  try:
    yield staging
  except BaseException:
    shutil.rmtree(staging, ignore_errors=True)
    raise
  if os.path.lexists(old):
    shutil.rmtree(old)
  if os.path.exists(path):
    os.replace(path, old)
  os.replace(staging, path)
  shutil.rmtree(old, ignore_errors=True)
