"""The model card's license id: what Hugging Face and the Model Card Toolkit read."""

import pytest

from pipeline import labels as labels_lib
from pipeline import model_card

pytestmark = pytest.mark.fast


@pytest.mark.parametrize("data_format,license_text,expected", [
    ("ham10000", None, "cc-by-nc-4.0"),  # The data's license, from defaults.json.
    ("synthetic", None, "apache-2.0"),
    ("folders", None, "other"),  # Unknown data: no id is claimed.
    ("folders", "MIT", "mit"),  # The user's own, when it is an SPDX id.
    ("ham10000", "Licensed to our clinic only", "other"),  # Free text: no id is claimed.
])
def test_license_id(data_format, license_text, expected):
  texts = labels_lib.metadata_defaults(data_format)
  info = {"license": license_text or texts["license"]}
  assert model_card.license_id(info, texts) == expected
