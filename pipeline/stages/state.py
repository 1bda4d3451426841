"""What the stages hand each other (BuildState), what survives a kill (Progress), and the
report assembled from both."""

import dataclasses
import json
import os
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from pipeline import __version__
from pipeline import atomic
from pipeline import provenance
from pipeline.config import STAGES, BuildConfig, RunOptions, model_file_name
from pipeline.config import readers
from pipeline.data import DataBundle
from pipeline.errors import PipelineError

PROGRESS_FILE = "build_state.json"


@dataclasses.dataclass
class BuildState:
  """Everything one stage produces for the next ones. Stages return a copy with their
  fields filled in (`dataclasses.replace`); nothing else carries data between stages."""
  options: RunOptions
  log: Callable[[str], None]
  started: str
  provenance: Dict[str, Optional[str]] = dataclasses.field(default_factory=dict)
  # data
  bundle: Optional[DataBundle] = None
  data_report: Optional[dict] = None
  # transfer, finetune, qat
  strategy: Any = None  # tf.distribute.Strategy
  cluster: Optional[dict] = None  # Multi-worker: this task, tasks and replicas.
  float_model: Any = None  # keras.Model
  qat_model: Any = None  # keras.Model
  training: Dict[str, dict] = dataclasses.field(default_factory=dict)  # phase -> PhaseResult
  crt: Optional[dict] = None  # The re-trained classifier (train/crt.py run_crt).
  # export, metadata
  calibration: Optional[np.ndarray] = None  # uint8 training images
  blobs: Dict[str, bytes] = dataclasses.field(default_factory=dict)  # variant -> .tflite
  tensors: Dict[str, dict] = dataclasses.field(default_factory=dict)
  metadata: Optional[Dict[str, str]] = None
  display_names: Tuple[str, ...] = ()
  app_runtimes: Optional[dict] = None  # Per runtime (Task Library, MediaPipe Tasks).
  # evaluate, gate, assets
  models: Optional[Dict[str, dict]] = None  # variant -> metrics on the test split
  # The shipped files' from the metadata stage (its app-runtime check), then every variant's.
  test_probs: Dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
  referral: Optional[dict] = None
  layer_error: Optional[dict] = None  # int8 vs float32 per layer (pipeline/layer_error.py)
  gate: Optional[dict] = None
  latency: Optional[List[dict]] = None

  @property
  def labels(self) -> Tuple[str, ...]:
    return self.bundle.labels

  def path(self, name: str) -> str:
    """A file of the build's output directory."""
    return os.path.join(self.options.output_dir, name)


class Progress:
  """Which stages finished and how long they took, persisted for --resume."""

  def __init__(self, config: BuildConfig, options: RunOptions):
    self.path = os.path.join(options.output_dir, PROGRESS_FILE)
    self.data = {"completed": [], "stage_seconds": {}}
    if options.rerun_from and not os.path.exists(self.path):
      raise PipelineError(f"--rerun_from={options.rerun_from}: {options.output_dir} holds no "
                          f"build ({PROGRESS_FILE} is missing); give the output directory of "
                          "a build, or drop --rerun_from")
    if options.resume and os.path.exists(self.path):
      with open(self.path, encoding="utf-8") as f:
        self.data = json.load(f)
      saved = _as_this_version(self.data.get("config"), self.path)
      current = json.loads(json.dumps(config.to_dict()))  # Tuples read back as lists.
      if options.rerun_from:
        self._keep_before(options.rerun_from, saved, current, options.output_dir)
      elif saved:
        self._check_resume(saved, current, options.output_dir)
    self.data["config"] = config.to_dict()

  def _check_resume(self, saved: dict, current: dict, output_dir: str) -> None:
    """--resume: no setting a finished stage read, nor any training setting (the interrupted
    phase continues from its checkpoint), may differ from the interrupted build."""
    completed = set(self.data.get("completed", []))
    for path in readers.changed_settings(saved, current):
      reader = readers.first_reader(path)
      if reader in completed or path.split(".")[0] in ("data", "model", "train"):
        raise PipelineError(
            f"--resume: {path} was {readers.setting(saved, path)!r} in the interrupted build in "
            f"{output_dir}, now {readers.setting(current, path)!r}, and its {reader} stage "
            f"{'already read it' if reader in completed else 'is under way'}; resume with the "
            f"same flags (--flagfile={os.path.join(output_dir, 'flags.txt')}), or give "
            f"--rerun_from={reader} to redo that stage and the later ones")

  def _keep_before(self, stage: str, saved: dict, current: dict, output_dir: str) -> None:
    """--rerun_from=stage: forgets `stage` and the later ones; the settings the earlier
    stages read must not have changed."""
    changed = readers.read_before(saved, current, stage) if saved else []
    if changed:
      setting, reader = changed[0]
      raise PipelineError(
          f"--rerun_from={stage}: {setting} differs from the build in {output_dir}, and its "
          f"{reader} stage (before {stage}) read it; give --rerun_from={reader} or the build's "
          f"value (--flagfile={os.path.join(output_dir, 'flags.txt')} repeats it)")
    if (stage == "crt" and saved.get("train", {}).get("crt")
        and not current["train"]["crt"]):
      raise PipelineError(f"--rerun_from=crt with train.crt false: the fine-tuned classifier was "
                          f"replaced by cRT's in {output_dir}; give --rerun_from=finetune")
    before = STAGES[:STAGES.index(stage)]
    self.data["completed"] = [s for s in self.data["completed"] if s in before]
    self.data["stage_seconds"] = {s: t for s, t in self.data["stage_seconds"].items()
                                  if s in before}

  def done(self, stage: str) -> bool:
    return stage in self.data["completed"]

  @property
  def stage_seconds(self) -> Dict[str, float]:
    return self.data["stage_seconds"]

  def finish(self, stage: str, seconds: float) -> None:
    if stage not in self.data["completed"]:
      self.data["completed"].append(stage)
    self.stage_seconds[stage] = self.stage_seconds.get(stage, 0.0) + seconds
    atomic.write_json(self.path, self.data)


def _as_this_version(saved: Optional[dict], path: str) -> dict:
  """The interrupted build's config with the fields this version added since filled in with
  the defaults that build ran with (`BuildConfig.from_dict`): so upgrading the pipeline does
  not turn --resume into a settings change. {} for none.

  Raises:
    PipelineError: fields this version does not know (a newer pipeline's build).
  """
  if not saved:
    return {}
  filled = BuildConfig.from_dict(saved, where=f"{path}: config").to_dict()
  return json.loads(json.dumps(filled))


def report(config: BuildConfig, state: BuildState, stage_seconds: Dict[str, float]) -> dict:
  """report.json: the recipe, the run, and what every finished stage measured."""
  norm = config.model.normalization
  out = {"name": os.path.basename(os.path.abspath(state.options.output_dir)),
         "config": config.to_dict(), "run": dataclasses.asdict(state.options),
         "normalization": {"mean": list(norm.mean), "std": list(norm.std)},
         "pipeline_version": __version__, "started": state.started,
         "provenance": state.provenance,
         "stage_seconds": dict(stage_seconds), "training": state.training}
  optional = {"data": state.data_report, "tensors": state.tensors or None,
              "calibration_images": None if state.calibration is None else len(state.calibration),
              "files": {v: {"file": model_file_name(v), "bytes": len(b),
                            "sha256": provenance.sha256(b),
                            "input_shape": state.tensors.get(v, {}).get("input_shape")}
                        for v, b in state.blobs.items()} or None,
              "crt": state.crt, "metadata": state.metadata, "app_runtimes": state.app_runtimes,
              "models": state.models, "referral": state.referral,
              "layer_error": state.layer_error, "gate": state.gate,
              "latency": state.latency, "cluster": state.cluster}
  out.update({k: v for k, v in optional.items() if v is not None})
  return out


def previous_training(options: RunOptions) -> Dict[str, dict]:
  """The phase results of the interrupted build (for --resume), or {}."""
  path = os.path.join(options.output_dir, "report.json")
  if not (options.resume and os.path.exists(path)):
    return {}
  with open(path, encoding="utf-8") as f:
    return json.load(f).get("training", {})
