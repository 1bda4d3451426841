r"""Takes the README's screenshots of pipeline.serve with headless Chromium.

  .venv/bin/python docs/screenshot.py --build_dir=build/demo --output_dir=docs

Starts the server on a free port, uploads two of the build's test images to the Try page as a
browser form would, and has Chromium render the server's answer (it is self-contained: the
previews are inline) at desktop width to serve_try.png and at a phone's 390 px to
serve_try_phone.png; the Review page is rendered from its URL to serve_review.png. Needs
`chromium` (Debian: apt-get install chromium).
"""

import io
import os
import shutil
import subprocess
import sys
import tempfile

from absl import app
from absl import flags

flags.DEFINE_string("build_dir", "build/demo", "A finished build's output directory.")
flags.DEFINE_string("output_dir", "docs", "Where the PNG files go.")
flags.DEFINE_integer("images", 2, "Test images to upload.")
FLAGS = flags.FLAGS
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from benchmarks import serve_load  # noqa: E402  pylint: disable=g-import-not-at-top


def _upload(url, files):
  status, _, page = serve_load.request(url + "/", *serve_load.multipart(files))
  if status != 200:
    raise SystemExit(f"docs/screenshot.py: the upload got {status}")
  return page


def _chromium(target, png, height, width=1100):
  browser = shutil.which("chromium") or shutil.which("chromium-browser")
  if not browser:
    raise SystemExit("docs/screenshot.py: no chromium on PATH (apt-get install chromium)")
  subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                  f"--window-size={width},{height}", f"--screenshot={png}", target], check=True,
                 capture_output=True, timeout=120)
  print(f"wrote {png}")


def main(argv):
  del argv
  sys.modules.setdefault("tensorflow", None)  # As pipeline.serve: LiteRT only.
  from PIL import Image  # pylint: disable=g-import-not-at-top
  from pipeline.web import review as review_lib  # pylint: disable=g-import-not-at-top
  review = review_lib.load(FLAGS.build_dir)
  files = []
  for i in range(FLAGS.images):
    buf = io.BytesIO()
    Image.fromarray(review.pixels[i * len(review.keys) // FLAGS.images]).save(buf, "PNG")
    files.append((os.path.basename(review.keys[i * len(review.keys) // FLAGS.images]),
                  buf.getvalue()))
  os.makedirs(FLAGS.output_dir, exist_ok=True)
  proc, url = serve_load.start_server([f"--build_dir={FLAGS.build_dir}"], cwd=REPO,
                                      env=dict(os.environ, PYTHONPATH=REPO))
  try:
    with tempfile.TemporaryDirectory() as tmp:
      page = os.path.join(tmp, "try.html")
      with open(page, "wb") as f:
        f.write(_upload(url, files))
      _chromium("file://" + page, os.path.join(FLAGS.output_dir, "serve_try.png"), 1000)
      _chromium("file://" + page, os.path.join(FLAGS.output_dir, "serve_try_phone.png"), 1500,
                width=390)
    _chromium(url + "/review", os.path.join(FLAGS.output_dir, "serve_review.png"), 1400)
  finally:
    proc.terminate()


if __name__ == "__main__":
  app.run(main)
