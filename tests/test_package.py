"""A non-editable `pip install .` carries the tool's metadata defaults and display names."""

import os
import shutil
import subprocess
import sys

from tests.conftest import REPO


def test_an_installed_package_finds_its_metadata(tmp_path):
  # A fresh venv, the project installed into it (no download: its dependencies are this
  # environment's, on PYTHONPATH), then imported from outside the checkout.
  source = tmp_path / "source"  # A copy: pip builds in its source tree (build/, *.egg-info).
  shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(
      ".git", ".venv*", "build", "*.egg-info", "__pycache__", "android_assets"))
  venv = tmp_path / "venv"
  subprocess.run([sys.executable, "-m", "venv", str(venv)],
                 check=True, capture_output=True)
  python = str(venv / "bin" / "python")
  site = subprocess.run([sys.executable, "-c", "import site; print(site.getsitepackages()[0])"],
                        check=True, capture_output=True, text=True).stdout.strip()
  env = dict(os.environ, PYTHONPATH=site, PIP_NO_INDEX="1")
  install = subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps",
                            "--no-build-isolation", str(source)], capture_output=True, text=True,
                           env=env, cwd=str(tmp_path))
  assert install.returncode == 0, install.stderr[-2000:]
  probe = ("import os, pipeline, pipeline.labels as l; "
           "assert 'site-packages' in pipeline.__file__, pipeline.__file__; "
           "print(l.metadata_defaults('ham10000')['intended_use'][:20]); "
           "print(l.load_class_info('')['mel'])")
  out = subprocess.run([python, "-c", probe], capture_output=True, text=True, cwd=str(tmp_path),
                       env=env)
  assert out.returncode == 0, out.stderr[-2000:]
  assert "Melanoma" in out.stdout or "melanoma" in out.stdout.lower(), out.stdout
