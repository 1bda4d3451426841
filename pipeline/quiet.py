"""Keeps native libraries' log lines (TensorFlow, XLA, the TFLite converter and interpreter)
off the user's terminal; they are shown when the call they came from fails, and always with
PIPELINE_VERBOSE=1 (`--verbose`)."""

import contextlib
import os
import sys
import tempfile
from typing import Iterator


def verbose() -> bool:
  return os.environ.get("PIPELINE_VERBOSE") == "1"


@contextlib.contextmanager
def native_stderr() -> Iterator[None]:
  """Captures file descriptor 2 (where C++ logging writes, below Python's sys.stderr) for
  the duration of the block; replays the capture if the block raises."""
  if verbose():
    yield
    return
  sys.stderr.flush()
  saved = os.dup(2)
  with tempfile.TemporaryFile() as capture:
    os.dup2(capture.fileno(), 2)
    try:
      yield
    except BaseException:
      sys.stderr.flush()
      os.dup2(saved, 2)
      capture.seek(0)
      sys.stderr.write(capture.read().decode("utf-8", errors="replace"))
      raise
    finally:
      sys.stderr.flush()
      os.dup2(saved, 2)
      os.close(saved)
