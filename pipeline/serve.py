r"""A local web page to try a built model and to review its errors.

  python -m pipeline.serve --model=build/demo/android_assets/model.tflite
  python -m pipeline.serve --build_dir=build/demo          # Try and Review pages

Try (/): upload photos, see the top 5 with display names, the referral flag and the
disclaimer. Review (/review, with --build_dir): the build's test split as QA sees it.
Listens on 127.0.0.1 only unless --host says otherwise. TensorFlow is never imported.
"""

import os
import socket
import sys
from typing import List

from absl import app
from absl import flags
from absl import logging

from pipeline.errors import PipelineError

flags.DEFINE_string("model", "", "The .tflite to try (default: BUILD_DIR/model_int8.tflite).")
flags.DEFINE_string("build_dir", "", "A build's output directory: adds the Review page of its "
                    "test split (int8 against float32).")
flags.DEFINE_string("host", "127.0.0.1", "Address to listen on; 0.0.0.0 exposes the page to "
                    "the network.")
flags.DEFINE_integer("port", 8000, "Port (0: any free one; the address is printed).",
                     lower_bound=0, upper_bound=65535)
flags.DEFINE_float("max_upload_mb", 20, "Largest upload request accepted.", lower_bound=0.01)
flags.DEFINE_integer("threads", 4, "Requests served at once, each with its own interpreter "
                     "(more use more memory; the cores bound the throughput).", lower_bound=1,
                     upper_bound=64)
FLAGS = flags.FLAGS


def make_server(model: str, build_dir: str, host: str, port: int, max_upload_mb: float,
                threads: int = 4):
  """The WSGI server (waitress) for one model (and build), bound and ready to serve.

  Args:
    model: the .tflite the Try page runs ("" for the build's int8 model).
    build_dir: a build's output directory, for the Review page ("" for none).
    host, port: where to listen (port 0: any free one).
    max_upload_mb: the largest request accepted.
    threads: requests served at once; the model gets one interpreter per thread.

  Raises:
    PipelineError: no model given, an unreadable model or build, or the port is taken.
  """
  import waitress  # pylint: disable=g-import-not-at-top
  from pipeline.classifier import Classifier  # pylint: disable=g-import-not-at-top
  from pipeline.config import model_file_name  # pylint: disable=g-import-not-at-top
  from pipeline.web import app as web_app  # pylint: disable=g-import-not-at-top
  from pipeline.web import review as review_lib  # pylint: disable=g-import-not-at-top
  if not model and not build_dir:
    raise PipelineError("give --model=M.tflite or --build_dir=BUILD (a build's output "
                        "directory)")
  if build_dir and not os.path.isdir(build_dir):
    raise PipelineError(f"--build_dir={build_dir}: no such directory")
  _check_can_listen(host, port)  # Before minutes of scoring the test split.
  review = None
  if build_dir:
    print(f"serve: scoring the test split of {build_dir} with int8 and float32 ...", flush=True)
    review = review_lib.load(build_dir)
  classifier = Classifier(model or os.path.join(build_dir, model_file_name("int8")),
                          concurrency=threads)
  application = web_app.create_app(classifier, review, max_upload_mb)
  try:
    # The request body limit is Flask's (MAX_CONTENT_LENGTH): one 413 with our message.
    return waitress.create_server(application, host=host, port=port, threads=threads,
                                  max_request_body_size=2 ** 40, ident="pipeline.serve")
  except OSError as e:  # Taken between the check and now.
    raise _cannot_listen(host, port, e) from None


def _cannot_listen(host: str, port: int, error: OSError) -> PipelineError:
  return PipelineError(f"cannot listen on {host}:{port} ({error.strerror or error}); pick "
                       "another --port (0 takes any free one) or --host")


def _check_can_listen(host: str, port: int) -> None:
  """Raises PipelineError when (host, port) cannot be bound."""
  try:
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    with socket.socket(family, socket.SOCK_STREAM) as sock:
      sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # As the server will.
      sock.bind((host, port))
  except OSError as e:
    raise _cannot_listen(host, port, e) from None


def main(argv: List[str]) -> None:
  logging.set_verbosity(logging.WARNING)
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  # tflite-support's metadata reader imports TensorFlow only to open files: block it.
  sys.modules.setdefault("tensorflow", None)
  try:
    server = make_server(FLAGS.model, FLAGS.build_dir, FLAGS.host, FLAGS.port,
                         FLAGS.max_upload_mb, FLAGS.threads)
  except PipelineError as e:
    sys.exit(f"pipeline.serve: error: {e}")
  url = f"http://{FLAGS.host}:{server.effective_port}/"
  pages = "Try: " + url + (f", Review: {url}review" if FLAGS.build_dir else "")
  print(f"serve: {pages} (Ctrl-C to stop)", flush=True)
  try:
    server.run()
  except KeyboardInterrupt:
    pass
  finally:
    server.close()


def entry_point() -> None:
  """Console script `tflite-serve`."""
  app.run(main)


if __name__ == "__main__":
  entry_point()
