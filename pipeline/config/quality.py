"""What QA holds a build to: the int8-vs-float32 parity gate and the referral threshold."""

import dataclasses
from typing import Optional, Tuple

from pipeline.config.fields import flag
from pipeline.errors import PipelineError
from pipeline.metrics import MALIGNANT


@dataclasses.dataclass(frozen=True)
class GateConfig:
  """The int8-vs-float32 parity gate that stops a broken model from shipping.

  It compares the two models image by image on the test split (pipeline/parity.py) and fails
  for evidence, not noise; BUILD.md ("Parity gate") justifies each default with figures.
  """
  # Agreement below this only a broken model reaches: every good int8 (QAT or PTQ) and
  # float16 model on HAM10000 agreed with float32 on 94.6-98.2% of the test images.
  min_top1_agreement: float = 0.90
  # int8 fails when even the low end of the 95% interval of its balanced-accuracy drop is
  # above this (the data then show a loss larger than we accept).
  max_balanced_accuracy_drop: float = 0.01
  # One-sided exact McNemar test: int8 wrong alone significantly more often than float32.
  mcnemar_alpha: float = 0.01
  # A flip of a right float32 answer at least this sure (top-1 minus top-2 probability) into
  # a wrong answer int8 is sure of (its top-1 at least `min_wrong_lead` above the true class)
  # is a defect, not rounding: it needs a class score of that image to move by >= 0.3, and
  # faithful int8 QAT models moved none by more than 0.27 (six HAM10000 builds). Either side
  # alone fired on faithful models (BUILD.md, "The parity gate").
  max_flip_margin: float = 0.4
  min_wrong_lead: float = 0.2
  bootstrap_rounds: int = 2000
  enabled: bool = flag(True, "quality", "Refuse to ship an int8 model that fails the parity "
                       "gate (--nogate ships it, with the verdict in the report).", name="gate")

  def validate(self) -> None:
    if not 0.0 <= self.min_top1_agreement <= 1.0:
      raise PipelineError("gate.min_top1_agreement must be in [0, 1]")
    if not 0.0 <= self.max_balanced_accuracy_drop <= 1.0:
      raise PipelineError("gate.max_balanced_accuracy_drop must be in [0, 1]")
    if not 0.0 < self.mcnemar_alpha < 1.0:
      raise PipelineError("gate.mcnemar_alpha must be in (0, 1)")
    if not 0.0 < self.max_flip_margin <= 1.0:
      raise PipelineError("gate.max_flip_margin must be in (0, 1]")
    if not 0.0 <= self.min_wrong_lead <= 1.0:
      raise PipelineError("gate.min_wrong_lead must be in [0, 1]")
    if self.bootstrap_rounds < 100:
      raise PipelineError("gate.bootstrap_rounds must be >= 100")


# The serious classes of each dataset whose labels are known in advance (hmnist_csv is
# HAM10000 too). A referral threshold is fit on their summed probability.
DEFAULT_MALIGNANT_CLASSES = {"ham10000": MALIGNANT, "hmnist_csv": MALIGNANT}


@dataclasses.dataclass(frozen=True)
class ReferralConfig:
  """A triage operating point: refer when P(serious classes) reaches a threshold that is fit
  on the validation split to catch `sensitivity` of new serious cases (referral.conformal_rank)."""
  # None: the data format's default (DEFAULT_MALIGNANT_CLASSES; none for other formats).
  # An empty tuple turns the referral threshold off.
  malignant_classes: Optional[Tuple[str, ...]] = flag(
      None, "quality", "Serious classes of the referral threshold (refer when their summed "
      "probability reaches it). Default: mel,bcc,akiec for ham10000 and hmnist_csv, none "
      "otherwise; --malignant_classes= turns it off.")
  sensitivity: float = flag(0.90, "quality", "Share of new serious cases the referral "
                            "threshold refers, on average.", name="referral_sensitivity")
  # 0: the sensitivity is promised on average over validation draws. c > 0: in a share c of
  # draws (the Beta quantile of the conformal rank): a margin for an app that needs it,
  # paid in specificity (BUILD.md, "The referral threshold").
  confidence: float = 0.0

  def classes(self, data_format: str, labels) -> Tuple[str, ...]:
    """The serious classes in force for a dataset with `labels`.

    The format's defaults are kept where the dataset has them (a HAM10000 subset without
    bcc refers on mel + akiec), and dropped altogether when nothing would be left to not
    refer. Classes the user named must all be labels (`check_labels`).
    """
    if self.malignant_classes is not None:
      return tuple(self.malignant_classes)
    present = tuple(c for c in DEFAULT_MALIGNANT_CLASSES.get(data_format, ()) if c in labels)
    return present if len(present) < len(labels) else ()

  def check_labels(self, data_format: str, labels) -> None:
    """Raises PipelineError if a serious class the user named is not one of the labels."""
    classes = self.classes(data_format, labels)
    missing = [c for c in classes if c not in labels]
    if missing:
      raise PipelineError(f"--malignant_classes: {', '.join(missing)} not among the dataset's "
                          f"labels ({', '.join(labels)}); name labels from labels.txt, or "
                          "give --malignant_classes= to build without a referral threshold")
    if classes and len(classes) >= len(labels):
      raise PipelineError("--malignant_classes names every label: a referral threshold needs "
                          "at least one class that is not referred")

  def validate(self) -> None:
    if not 0.0 < self.sensitivity < 1.0:
      raise PipelineError(f"--referral_sensitivity={self.sensitivity} must be in (0, 1)")
    if not 0.0 <= self.confidence < 1.0:
      raise PipelineError(f"referral.confidence={self.confidence} must be in [0, 1)")
