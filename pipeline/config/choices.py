"""The closed sets of choices a build accepts, and the one check that enforces them."""

from typing import Tuple

from pipeline.errors import PipelineError

DATA_FORMATS = ("ham10000", "folders", "hmnist_csv", "synthetic")
STAGES = ("data", "transfer", "finetune", "crt", "qat", "export", "metadata", "evaluate", "gate",
          "assets")
STRATEGIES = ("default", "mirrored", "multi_worker")
IO_DTYPES = ("uint8", "int8", "float32")
VARIANTS = ("int8", "int8_tta8", "int8_ptq", "float16", "float32")
CLASS_WEIGHTS = ("balanced", "none", "sqrt")
# What each class balance is called in the report, the model card and the logs: one wording.
BALANCE_NAMES = {"none": "the plain loss, no class weights",
                 "balanced": "inverse-frequency class weights",
                 "sqrt": "square-root inverse-frequency class weights"}


def check_choice(name: str, value: str, choices: Tuple[str, ...]) -> str:
  """Returns `value` if it is one of `choices`.

  Raises:
    PipelineError: naming the valid values otherwise.
  """
  if value not in choices:
    raise PipelineError(f"{name}={value!r} is not valid; use one of: {', '.join(choices)}")
  return value


def stage_index(stage: str) -> int:
  return STAGES.index(stage)
