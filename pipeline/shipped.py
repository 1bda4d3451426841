"""What a build ships, named once: the disclaimer every result carries and the app folder's
file names. A leaf module: it imports nothing of the pipeline."""

DISCLAIMER = ("This model is a triage aid, never a diagnosis. It is not a diagnostic device: "
              "it must not be used to rule out disease or to replace a clinician's examination.")

# The shipped file of each variant that can ship. int8_tta8: the same network over 8 views;
# float16: for iOS's Core ML delegate, which runs float models only.
SHIPPED_FILES = {"int8": "model.tflite", "int8_tta8": "model_tta8.tflite",
                 "float16": "model_float16.tflite"}
MODEL_FILE, TTA_MODEL_FILE = SHIPPED_FILES["int8"], SHIPPED_FILES["int8_tta8"]
FLOAT16_MODEL_FILE = SHIPPED_FILES["float16"]
LABELS_FILE = "labels.txt"
REFERRAL_FILE = "referral.json"
MODEL_CARD_FILE = "MODEL_CARD.md"
APP_README_FILE = "README.md"
