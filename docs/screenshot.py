r"""Takes the README's screenshots of pipeline.serve with headless Chromium.

  .venv/bin/python docs/screenshot.py --build_dir=build/demo --output_dir=docs

Starts the server on a free port, uploads two of the build's test images to the Try page as a
browser form would, and has Chromium render the server's answer (it is self-contained: the
previews are inline) to serve_try.png; the Review page is rendered from its URL to
serve_review.png. Needs `chromium` (Debian: apt-get install chromium).
"""

import io
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
import uuid

from absl import app
from absl import flags

flags.DEFINE_string("build_dir", "build/demo", "A finished build's output directory.")
flags.DEFINE_string("output_dir", "docs", "Where the PNG files go.")
flags.DEFINE_integer("images", 2, "Test images to upload.")
FLAGS = flags.FLAGS
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _start_server(build_dir):
  proc = subprocess.Popen([sys.executable, "-m", "pipeline.serve", f"--build_dir={build_dir}",
                           "--port=0"], cwd=REPO, stdout=subprocess.PIPE, text=True,
                          env=dict(os.environ, PYTHONPATH=REPO))
  for line in proc.stdout:
    if "Try: " in line:
      return proc, line.split("Try: ")[1].split(",")[0].rstrip("/")
  raise SystemExit("docs/screenshot.py: the server did not start")


def _upload(url, files):
  boundary = uuid.uuid4().hex
  body = b"".join(
      f"--{boundary}\r\nContent-Disposition: form-data; name=\"photos\"; filename=\"{name}\"\r\n"
      f"Content-Type: image/png\r\n\r\n".encode() + data + b"\r\n" for name, data in files)
  body += f"--{boundary}--\r\n".encode()
  req = urllib.request.Request(url + "/", data=body, headers={
      "Content-Type": f"multipart/form-data; boundary={boundary}"})
  with urllib.request.urlopen(req, timeout=120) as r:
    return r.read()


def _chromium(target, png, height):
  browser = shutil.which("chromium") or shutil.which("chromium-browser")
  if not browser:
    raise SystemExit("docs/screenshot.py: no chromium on PATH (apt-get install chromium)")
  subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                  f"--window-size=1100,{height}", f"--screenshot={png}", target], check=True,
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
  proc, url = _start_server(FLAGS.build_dir)
  try:
    with tempfile.TemporaryDirectory() as tmp:
      page = os.path.join(tmp, "try.html")
      with open(page, "wb") as f:
        f.write(_upload(url, files))
      _chromium("file://" + page, os.path.join(FLAGS.output_dir, "serve_try.png"), 1000)
    _chromium(url + "/review", os.path.join(FLAGS.output_dir, "serve_review.png"), 1400)
  finally:
    proc.terminate()


if __name__ == "__main__":
  app.run(main)
