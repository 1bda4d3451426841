"""pipeline.serve over real HTTP: the Try page classifies uploads like the interpreter does,
refuses bad ones with a 4xx and keeps serving; the Review page shows the build's test split;
nothing else is reachable."""

import html
import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from benchmarks import serve_load
from pipeline.shipped import DISCLAIMER
from pipeline.runner import load_model_file
from tests.conftest import REPO


def _start(*flags):
  return serve_load.start_server(flags, cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO))


@pytest.fixture(scope="module")
def server(built):
  _, run, _ = built
  proc, url = _start(f"--build_dir={run.output_dir}", "--max_upload_mb=1")
  yield url, run
  proc.terminate()
  proc.wait(timeout=30)


def _request(url, data=None, content_type=None):
  return serve_load.request(url, data, content_type, timeout=60)


def _post(url, files):
  """multipart/form-data with each (name, bytes) as a 'photos' file."""
  return _request(url, *serve_load.multipart(files))


def _image_bytes(pixels, fmt="PNG", mode=None):
  buf = io.BytesIO()
  img = Image.fromarray(pixels)
  (img.convert(mode) if mode else img).save(buf, format=fmt)
  return buf.getvalue()


def _photo(seed, size=70):
  from pipeline import synthetic
  return synthetic.make_image(seed % 3, size, np.random.default_rng(seed))


def test_try_page_classifies_as_the_interpreter_does(server):
  url, run = server
  status, _, body = _request(url + "/")
  assert status == 200 and DISCLAIMER in html.unescape(body.decode()) and 'type="file"' in str(body)
  model = os.path.join(run.output_dir, "model_int8.tflite")
  runner, meta = load_model_file(model)
  photos = [_photo(1), _photo(2, 100)]
  status, kind, body = _post(url + "/api/classify", [
      ("a.png", _image_bytes(photos[0])), ("b.jpg", _image_bytes(photos[1], "JPEG"))])
  assert status == 200 and kind == "application/json", body[:500]
  answer = json.loads(body)
  assert answer["disclaimer"] == DISCLAIMER and not answer["errors"]
  for result, name, fmt, pixels in zip(answer["results"], ("a.png", "b.jpg"), ("PNG", "JPEG"),
                                       photos):
    assert result["file"] == name
    # What the page answers is what the interpreter gives for the same decoded image.
    from pipeline import images
    decoded, _ = images.load_rgb(io.BytesIO(_image_bytes(pixels, fmt)), runner.image_size)
    probs = runner.predict(decoded[None])[0]
    assert [t["label"] for t in result["top"]] == [
        meta["labels"][i] for i in np.argsort(-probs, kind="stable")[:5]]
    assert result["top"][0]["score"] == pytest.approx(float(probs.max()), abs=1e-6)
    assert isinstance(result["refer"], bool)  # The smoke build ships a referral threshold.
  # The HTML page: one result card per photo, each with bars, the referral line, the disclaimer.
  status, _, body = _post(url + "/", [("a.png", _image_bytes(photos[0], mode="RGBA"))])
  page = html.unescape(body.decode())
  assert status == 200 and page.count(DISCLAIMER) == 1, page[-3000:]
  assert "converted RGBA to RGB" in page and 'class="bar"' in page
  assert "referral threshold" in page and "data:image/png;base64," in page


@pytest.mark.parametrize("files,status,needle", [
    ([("notes.txt", b"not an image at all")], 400, "notes.txt</b>: not a readable image"),
    ([("cut.png", None)], 400, "cut.png</b>: not a readable image"),
    ([], 400, "No photo in the request"),
    ([("big.png", b"x" * 1_500_000)], 413, "larger than 1 MB"),
])
def test_bad_uploads_get_a_4xx_and_a_message_and_the_server_keeps_serving(server, files,
                                                                          status, needle):
  url, run = server
  before = sorted(os.listdir(run.output_dir))
  files = [(n, d if d is not None else _image_bytes(_photo(3))[:200]) for n, d in files]
  got, _, body = _post(url + "/", files)
  assert got == status and needle in body.decode(), body.decode()[-2000:]
  assert "Traceback" not in body.decode()
  assert _request(url + "/")[0] == 200  # Still serving.
  assert sorted(os.listdir(run.output_dir)) == before  # Uploads are not stored.


def test_review_page_shows_the_test_split(server, built):
  url, run = server
  report = built[2]
  status, _, body = _request(url + "/review")
  page = body.decode()
  assert status == 200, page[-2000:]
  int8 = report["models"]["int8"]
  assert f"{100 * int8['accuracy']:.1f}%" in page
  assert "Confusion matrix" in page and "Parity gate: passed" in page
  for label in report["data"]["labels"]:
    assert f"<th>{label}</th>" in page
  assert "int8 and float32 disagree" in page and "Misclassified by int8" in page
  status, kind, png = _request(url + "/review/image/0.png")
  assert status == 200 and kind == "image/png"
  size = report["config"]["data"]["image_size"]
  assert Image.open(io.BytesIO(png)).size == (size, size)


@pytest.mark.parametrize("path", ["/review/image/100000.png", "/static/config.json",
                                  "/config.json", "/../config.json", "/review/image/-1.png",
                                  "/%2e%2e/report.json"])
def test_nothing_else_is_served(server, path):
  url, _ = server
  status, _, body = _request(url + path)
  assert status == 404 and b"Traceback" not in body


def test_a_taken_port_is_one_line(server):
  url, run = server
  port = url.rsplit(":", 1)[1]
  proc = subprocess.run([sys.executable, "-m", "pipeline.serve", f"--port={port}",
                         f"--model={os.path.join(run.output_dir, 'model_int8.tflite')}"],
                        cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO), capture_output=True,
                        text=True, timeout=300, check=False)
  assert proc.returncode != 0 and "Traceback" not in proc.stderr
  assert proc.stderr.strip().splitlines()[-1].startswith(
      f"pipeline.serve: error: cannot listen on 127.0.0.1:{port}")


def test_concurrent_requests_each_get_their_own_answer(server):
  # 400 uploads from 16 clients at once: no 5xx, and every answer is the one its photo gets
  # alone (an interpreter shared between threads fails these, or answers another photo's).
  url, _ = server
  photos = [_image_bytes(_photo(seed, 64 + 8 * (seed % 4))) for seed in range(24)]
  result = serve_load.load(url, photos, requests=400, clients=16)
  assert result["status_counts"] == {200: 400}, result["status_counts"]
  assert not result["mismatches"], result["mismatches"][:3]
  classes = {serve_load.top(serve_load.classify(url, p)[1])[0][0] for p in photos}
  assert len(classes) >= 2  # The photos are of different classes, so a mix-up would show.


def test_a_form_with_too_many_parts_is_named_as_such(server):
  url, _ = server
  status, _, body = _post(url + "/api/classify", [(f"{i}.txt", b"x") for i in range(300)])
  assert status == 413 and b"more than" in body and b"parts" in body, body
  assert b"larger than" not in body


def test_try_page_shows_the_disclaimer_once_and_no_label_twice(server):
  url, _ = server
  photos = [("a.png", _image_bytes(_photo(1))), ("b.png", _image_bytes(_photo(2)))]
  status, _, body = _post(url + "/", photos)
  page = html.unescape(body.decode())
  assert status == 200 and page.count(DISCLAIMER) == 1
  for label in ("red", "green", "blue"):
    assert f"{label} <small>({label})</small>" not in page


def test_a_taken_port_is_found_before_the_test_split_is_scored(server):
  url, run = server
  port = url.rsplit(":", 1)[1]
  proc = subprocess.run([sys.executable, "-m", "pipeline.serve", f"--port={port}",
                         f"--build_dir={run.output_dir}"], cwd=REPO,
                        env=dict(os.environ, PYTHONPATH=REPO), capture_output=True, text=True,
                        timeout=300, check=False)
  assert proc.returncode != 0 and "cannot listen on" in proc.stderr
  assert "scoring the test split" not in proc.stdout  # Refused before minutes of work.
