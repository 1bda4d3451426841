"""Metadata stage: embeds labels, display names, normalization and model info in a .tflite."""

import json
import os
import struct
import tempfile
from typing import Dict, Optional, Sequence

from pipeline import labels as labels_lib
from pipeline import native
from pipeline.errors import PipelineError
from pipeline.preprocessing import Normalization

LABELS_FILE = labels_lib.FILE_NAME
DISPLAY_NAMES_FILE = "labels_en.txt"  # Task Library's display_names_locale defaults to "en".


def _reader():
  """tflite-support's metadata module (reading needs nothing else)."""
  native.load_libusb()
  from tensorflow_lite_support.metadata.python import metadata as md  # pylint: disable=g-import-not-at-top
  return md


def _writers():
  native.load_libusb()
  # pylint: disable=g-import-not-at-top
  from tensorflow_lite_support.metadata.python import metadata as md
  from tensorflow_lite_support.metadata.python.metadata_writers import image_classifier
  from tensorflow_lite_support.metadata.python.metadata_writers import metadata_info
  from tensorflow_lite_support.metadata.python.metadata_writers import writer_utils
  return md, image_classifier, metadata_info, writer_utils


def strip(tflite: bytes) -> bytes:
  """Returns the model without TFLite metadata or packed files (re-labeling starts here)."""
  native.load_libusb()
  import flatbuffers  # pylint: disable=g-import-not-at-top
  from tensorflow_lite_support.metadata import schema_py_generated as schema  # pylint: disable=g-import-not-at-top
  model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(tflite, 0))
  kept = []
  for m in model.metadata or []:
    name = m.name.decode() if isinstance(m.name, bytes) else m.name
    if name == "TFLITE_METADATA":
      model.buffers[m.buffer].data = None  # Emptied, not removed: indices stay valid.
    else:
      kept.append(m)
  model.metadata = kept or None
  builder = flatbuffers.Builder(1024)
  builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
  # Packed associated files live in a zip appended after the flatbuffer; Pack drops them.
  return bytes(builder.Output())


def write(tflite: bytes, labels: Sequence[str], display_names: Sequence[str],
          normalization: Normalization, info: Dict[str, str]) -> bytes:
  """Returns `tflite` with TFLite metadata populated.

  Args:
    tflite: the model flatbuffer.
    labels: class ids in output order (from labels.txt).
    display_names: human names in the same order (labels_en.txt, locale "en").
    normalization: the input normalization training used.
    info: name, description, version, author, license.

  Returns:
    The model with metadata and both label files packed in.
  """
  md, image_classifier, metadata_info, writer_utils = _writers()
  try:
    md.MetadataDisplayer.with_model_buffer(tflite)
    tflite = strip(tflite)  # Writing twice would fail on the already packed label files.
  except ValueError:
    pass  # No metadata yet.
  with tempfile.TemporaryDirectory() as tmp:
    labels_path = os.path.join(tmp, LABELS_FILE)
    names_path = os.path.join(tmp, DISPLAY_NAMES_FILE)
    labels_lib.write_labels(labels_path, labels)
    labels_lib.write_labels(names_path, display_names)  # Same format: one name per line.
    general = metadata_info.GeneralMd(name=info["name"], version=info["version"],
                                      description=info["description"], author=info["author"],
                                      licenses=info["license"])
    input_md = metadata_info.InputImageTensorMd(
        name="image", description="RGB image; pixels normalized as (p - mean) / std.",
        norm_mean=list(normalization.mean), norm_std=list(normalization.std),
        color_space_type=metadata_info._metadata_fb.ColorSpaceType.RGB,  # pylint: disable=protected-access
        tensor_type=writer_utils.get_input_tensor_types(tflite)[0])
    output_md = metadata_info.ClassificationTensorMd(
        name="probability", description="Probabilities of the classes in labels.txt order.",
        label_files=[metadata_info.LabelFileMd(labels_path),
                     metadata_info.LabelFileMd(names_path, locale="en")],
        tensor_type=writer_utils.get_output_tensor_types(tflite)[0])
    writer = image_classifier.MetadataWriter.create_from_metadata_info(
        bytearray(tflite), general_md=general, input_md=input_md, output_md=output_md)
    return bytes(writer.populate())


def read(tflite: bytes) -> dict:
  """Reads metadata back: the fields, normalization and the packed label files."""
  md = _reader()
  if len(tflite) < 8 or tflite[4:8] != b"TFL3":  # The flatbuffer's file identifier.
    raise PipelineError("not a TFLite model (no TFL3 identifier); give a .tflite file")
  try:
    displayer = md.MetadataDisplayer.with_model_buffer(tflite)
  except (ValueError, struct.error) as e:
    raise PipelineError(f"the model has no readable TFLite metadata ({e})") from e
  meta = json.loads(displayer.get_metadata_json())
  files = {name: displayer.get_associated_file_buffer(name).decode("utf-8").splitlines()
           for name in displayer.get_packed_associated_file_list()}
  tensor = meta["subgraph_metadata"][0]["input_tensor_metadata"][0]
  norm = next((u["options"] for u in tensor.get("process_units", [])
               if u.get("options_type") == "NormalizationOptions"), {})
  return {
      "name": meta.get("name"), "description": meta.get("description"),
      "version": meta.get("version"), "author": meta.get("author"),
      "license": meta.get("license"), "mean": norm.get("mean"), "std": norm.get("std"),
      "labels": files.get(LABELS_FILE), "display_names": files.get(DISPLAY_NAMES_FILE),
      "json": meta,
  }


def normalization(meta: dict) -> Optional[Normalization]:
  """The input normalization a `read` result states (one value stands for all channels);
  None when the metadata has none."""
  if meta.get("mean") is None or meta.get("std") is None:
    return None
  per_channel = lambda v: tuple(float(x) for x in v) * (3 if len(v) == 1 else 1)
  return Normalization(per_channel(meta["mean"]), per_channel(meta["std"]))


def verify(tflite: bytes, labels: Sequence[str], display_names: Sequence[str],
           normalization: Normalization, info: Dict[str, str], where: str) -> dict:
  """Reads the metadata back and compares it with labels.txt and the config.

  Raises:
    PipelineError: naming the first field that differs.
  """
  got = read(tflite)
  expected = {"labels": list(labels), "display_names": list(display_names),
              "mean": [float(m) for m in normalization.mean],
              "std": [float(s) for s in normalization.std], **info}
  for key, want in expected.items():
    have = got.get(key)
    if isinstance(want, list):
      have = [float(v) for v in have] if key in ("mean", "std") and have else have
    if have != want:
      raise PipelineError(f"{where}: embedded metadata field {key!r} is {have!r}, expected "
                          f"{want!r}; the metadata writer and labels.txt disagree")
  return got
