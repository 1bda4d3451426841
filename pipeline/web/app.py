"""The Flask application behind pipeline.serve.

Routes (nothing else is served: no static folder, no path from a request reaches the disk):
  GET  /                     the Try page
  POST /                     classify the uploaded photos, shown on the Try page
  POST /api/classify         the same, as JSON
  GET  /review               the Review page (with --build_dir)
  GET  /review/image/N.png   test image N of the build, from memory
Uploads are decoded in memory and never stored.
"""

import base64
import io
from typing import List, Optional, Tuple

import flask
import numpy as np
from PIL import Image
from werkzeug import exceptions

from pipeline import images as images_lib
from pipeline.shipped import DISCLAIMER
from pipeline.classifier import Classifier
from pipeline.web.review import Review

TOP_K = 5
MAX_FILES = 32
MAX_FORM_PARTS = 4 * MAX_FILES  # Werkzeug refuses a form with more parts (413).
GALLERY_LIMIT = 60  # Cards per gallery unless ?all=1.


def create_app(classifier: Classifier, review: Optional[Review] = None,
               max_upload_mb: float = 20) -> flask.Flask:
  """The application for one model (and, optionally, its build's test split).

  Args:
    classifier: the model the Try page runs.
    review: the build's test split and both models' scores, for the Review page.
    max_upload_mb: the largest request accepted (413 above it).
  """
  app = flask.Flask(__name__, static_folder=None)
  app.config["MAX_CONTENT_LENGTH"] = int(max_upload_mb * 1024 * 1024)
  app.config["MAX_FORM_PARTS"] = MAX_FORM_PARTS
  model = {"name": classifier.meta.get("name") or "model",
           "version": classifier.meta.get("version") or "unknown",
           "demo": (classifier.meta.get("name") or "").startswith("Pipeline demo classifier"),
           "referral": classifier.referral}

  def page(template: str, status: int = 200, **values):
    return flask.render_template(template, model=model, disclaimer=DISCLAIMER,
                                 has_review=review is not None, **values), status

  @app.get("/")
  def try_page():
    return page("try.html", results=[], errors=[])

  @app.post("/")
  def try_upload():
    results, errors, status = _classify_uploads(classifier)
    return page("try.html", status, results=results, errors=errors)

  @app.post("/api/classify")
  def api_classify():
    results, errors, status = _classify_uploads(classifier)
    for r in results:
      r.pop("preview")
    return flask.jsonify({"model": {"name": model["name"], "version": model["version"]},
                          "disclaimer": DISCLAIMER, "results": results, "errors": errors}), status

  @app.get("/review")
  def review_page():
    if review is None:
      return page("message.html", 404, title="No review",
                  message="Start the server with --build_dir=BUILD to review a build.")
    show_all = flask.request.args.get("all") == "1"
    limit = None if show_all else GALLERY_LIMIT
    galleries = [(title, [review.card(i) for i in idx[:limit]], len(idx)) for title, idx in (
        ("int8 and float32 disagree", review.disagreements()),
        ("Misclassified by int8 (most confident first)", review.misclassified()))]
    confusion = review.confusion("int8")
    return page("review.html", review=review, summary=review.summary(),
                per_class=review.per_class(), confusion=confusion.tolist(),
                row_totals=np.maximum(confusion.sum(axis=1), 1).tolist(),
                galleries=galleries, show_all=show_all, limit=GALLERY_LIMIT)

  @app.get("/review/image/<int:index>.png")
  def review_image(index: int):
    if review is None or not 0 <= index < len(review.keys):
      flask.abort(404)
    return flask.send_file(_png(review.pixels[index]), mimetype="image/png")

  @app.errorhandler(exceptions.HTTPException)
  def http_error(e: exceptions.HTTPException):
    message = e.description
    if isinstance(e, exceptions.RequestEntityTooLarge):
      size = flask.request.content_length
      if size is not None and size <= app.config["MAX_CONTENT_LENGTH"]:
        message = (f"The form has more than {MAX_FORM_PARTS} parts; send at most {MAX_FILES} "
                   "photos in one request.")
      else:
        message = (f"The upload is larger than {max_upload_mb:g} MB; send fewer or smaller "
                   "photos (the server's --max_upload_mb).")
    if flask.request.path.startswith("/api/"):
      return flask.jsonify({"error": message, "disclaimer": DISCLAIMER}), e.code
    return page("message.html", e.code, title=f"{e.code} {e.name}", message=message)

  return app


def _classify_uploads(classifier: Classifier) -> Tuple[List[dict], List[dict], int]:
  """The request's photos classified: (results, errors, HTTP status).

  Every photo that decodes is classified; the status is 400 when any photo (or the request)
  was unusable, so a script notices, while the page still shows the others' results.
  """
  files = [f for f in flask.request.files.getlist("photos") if f.filename or f.content_length]
  if not files:
    return [], [{"file": "", "error": "No photo in the request: choose one or more JPEG or "
                                      "PNG files (form field 'photos')."}], 400
  if len(files) > MAX_FILES:
    return [], [{"file": "", "error": f"{len(files)} photos in one request; send at most "
                                      f"{MAX_FILES}."}], 400
  results, errors = [], []
  for f in files:
    name = f.filename or "upload"
    try:
      pixels, note = images_lib.load_rgb(io.BytesIO(f.read()), classifier.image_size)
    except images_lib.ImageError as e:
      errors.append({"file": name, "error": f"{e}; upload a JPEG or PNG photo."})
      continue
    result = classifier.classify(pixels, TOP_K)
    results.append({"file": name, "note": note, **result,
                    "preview": base64.b64encode(_png(pixels).getvalue()).decode("ascii")})
  return results, errors, 400 if errors else 200


def _png(pixels: np.ndarray) -> io.BytesIO:
  buf = io.BytesIO()
  Image.fromarray(pixels).save(buf, format="PNG")
  buf.seek(0)
  return buf
