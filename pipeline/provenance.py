"""Where a build came from: the pipeline version, the git commit of its source, the date, and
the SHA-256 of every model file, so QA can tie a file in an app to the build that made it."""

import datetime
import hashlib
import os
import subprocess
from typing import Dict, Optional

from pipeline import __version__

_SOURCE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def git_commit() -> Optional[str]:
  """The commit the pipeline's source is at, "+dirty" when it has uncommitted changes; None
  outside a git checkout (an installed wheel)."""
  try:
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=_SOURCE, capture_output=True,
                            text=True, timeout=10, check=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                           cwd=_SOURCE, capture_output=True, text=True, timeout=10,
                           check=True).stdout.strip()
  except (OSError, subprocess.SubprocessError):
    return None
  return commit + ("+dirty" if dirty else "")


def build_info(started: str) -> Dict[str, Optional[str]]:
  """report.json's "provenance": date, pipeline version, git commit."""
  return {"build_date": started, "pipeline_version": __version__, "git_commit": git_commit()}


def sha256(blob: bytes) -> str:
  return hashlib.sha256(blob).hexdigest()


def today() -> str:
  return datetime.date.today().isoformat()
