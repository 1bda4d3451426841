r"""Load on pipeline.serve over real HTTP: throughput at several numbers of concurrent clients,
and whether every answer under load is the answer the same photo gets alone.

  python -m benchmarks.serve_load --build_dir=build/demo --clients=1,4,16 --requests=400

It starts `python -m pipeline.serve` on 127.0.0.1 (any free port), sends the build's test
images one per `POST /api/classify`, and stops the server. Traffic never leaves this machine.
"""

import concurrent.futures
import io
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from typing import List, Sequence, Tuple

from absl import app
from absl import flags

from benchmarks import common

FLAGS = flags.FLAGS


def define_flags() -> None:
  flags.DEFINE_string("build_dir", "", "A finished build: its int8 model is served and its "
                      "test images are the photos sent.")
  flags.DEFINE_list("clients", ["1", "4", "16"], "Concurrent clients, one measurement each.")
  flags.DEFINE_integer("requests", 400, "Requests per measurement.", lower_bound=1)
  flags.DEFINE_integer("threads", 4, "The server's --threads.", lower_bound=1)
  flags.DEFINE_string("output_json", "", "JSON report (default: BUILD_DIR/bench/serve_load.json).")


def multipart(files: Sequence[Tuple[str, bytes]], field: str = "photos") -> Tuple[bytes, str]:
  """(body, Content-Type) of a multipart/form-data request with each (name, bytes) a file."""
  boundary = uuid.uuid4().hex
  body = b""
  for name, data in files:
    body += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; "
             f"filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n").encode()
    body += data + b"\r\n"
  body += f"--{boundary}--\r\n".encode()
  return body, f"multipart/form-data; boundary={boundary}"


def request(url: str, data: bytes = None, content_type: str = None, timeout: float = 120):
  """(status, Content-Type, body) of one HTTP request; an HTTP error is an answer too."""
  req = urllib.request.Request(url, data=data,
                               headers={"Content-Type": content_type} if content_type else {})
  try:
    with urllib.request.urlopen(req, timeout=timeout) as r:
      return r.status, r.headers.get("Content-Type"), r.read()
  except urllib.error.HTTPError as e:
    return e.code, e.headers.get("Content-Type"), e.read()


def classify(url: str, photo: bytes) -> Tuple[int, dict]:
  """(status, JSON answer) of POST /api/classify with one photo."""
  body, kind = multipart([("photo.png", photo)])
  status, _, answer = request(url + "/api/classify", body, kind)
  try:
    return status, json.loads(answer)
  except ValueError:
    return status, {"error": answer[:200].decode("utf-8", "replace")}


def top(answer: dict) -> List[Tuple[str, float]]:
  """The (label, score) list of a one-photo answer ([] when it has no result)."""
  results = answer.get("results") or [{}]
  return [(t["label"], t["score"]) for t in results[0].get("top", [])]


def load(url: str, photos: Sequence[bytes], requests: int, clients: int) -> dict:
  """Sends `requests` photos (cycling through `photos`) from `clients` threads at once.

  Every answer is compared with the answer its photo got alone (sent first, one at a time).

  Returns:
    {"clients", "requests", "seconds", "requests_per_s", "status_counts", "server_errors",
     "mismatches": [(photo index, alone, under load), ...]}.
  """
  alone = [top(classify(url, p)[1]) for p in photos]
  t0 = time.perf_counter()
  with concurrent.futures.ThreadPoolExecutor(clients) as pool:
    answers = list(pool.map(lambda i: (i % len(photos), classify(url, photos[i % len(photos)])),
                            range(requests)))
  seconds = time.perf_counter() - t0
  statuses = {}
  mismatches = []
  for i, (status, answer) in answers:
    statuses[status] = statuses.get(status, 0) + 1
    if status == 200 and top(answer) != alone[i]:
      mismatches.append((i, alone[i], top(answer)))
  return {"clients": clients, "requests": requests, "seconds": seconds,
          "requests_per_s": requests / seconds, "status_counts": statuses,
          "server_errors": sum(n for s, n in statuses.items() if s >= 500),
          "mismatches": mismatches}


def start_server(args: Sequence[str], cwd: str = None,
                 env: dict = None) -> Tuple[subprocess.Popen, str]:
  """Starts `python -m pipeline.serve --port=0 ARGS`; returns (process, base URL).

  Raises:
    RuntimeError: the server stopped or did not say where it listens within 5 minutes.
  """
  proc = subprocess.Popen([sys.executable, "-m", "pipeline.serve", "--port=0", *args], cwd=cwd, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  deadline = time.time() + 300
  while time.time() < deadline:
    line = proc.stdout.readline()
    if "Try: " in line:
      return proc, line.split("Try: ")[1].split(",")[0].split(" ")[0].rstrip("/")
    if not line and proc.poll() is not None:
      break
  proc.kill()
  raise RuntimeError(f"pipeline.serve did not start: {proc.stderr.read()[-2000:]}")


def measure_from_flags() -> dict:
  from PIL import Image  # pylint: disable=g-import-not-at-top
  from pipeline.errors import PipelineError  # pylint: disable=g-import-not-at-top
  if not FLAGS.build_dir:
    raise PipelineError("give --build_dir=BUILD (a finished build)")
  _, split = common.build_split(FLAGS.build_dir, "test")
  photos = []
  for pixels in split.pixels()[:64]:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    photos.append(buf.getvalue())
  proc, url = start_server([f"--build_dir={FLAGS.build_dir}", f"--threads={FLAGS.threads}"])
  try:
    runs = []
    for clients in [int(c) for c in FLAGS.clients]:
      common.progress(f"{FLAGS.requests} requests from {clients} client(s) ...")
      runs.append(load(url, photos, FLAGS.requests, clients))
  finally:
    proc.terminate()
    proc.wait(timeout=30)
  return {"build_dir": FLAGS.build_dir, "server_threads": FLAGS.threads, "cpus": os.cpu_count(),
          "photos": len(photos), "runs": runs}


def markdown(payload: dict) -> List[str]:
  lines = [f"# pipeline.serve under load ({payload['server_threads']} server threads, "
           f"{payload['cpus']} CPUs, {payload['photos']} distinct photos)", "",
           "| clients | requests | requests/s | 5xx | answers unlike the photo's own |",
           "|---:|---:|---:|---:|---:|"]
  for r in payload["runs"]:
    lines.append(f"| {r['clients']} | {r['requests']} | {r['requests_per_s']:.1f} | "
                 f"{r['server_errors']} | {len(r['mismatches'])} |")
  return lines


def main(argv: List[str]) -> None:
  common.main("benchmarks.serve_load", argv, measure_from_flags, markdown,
              FLAGS.output_json or os.path.join(FLAGS.build_dir, "bench", "serve_load.json"), "")


if __name__ == "__main__":
  define_flags()
  app.run(main)
