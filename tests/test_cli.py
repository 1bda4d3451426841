"""The command line: user mistakes give one clear line and a non-zero exit (never a
traceback), and a build's flags.txt and config.json reproduce it."""

import json

import pytest

from pipeline.config import BuildConfig
from pipeline.errors import PipelineError

from tests.conftest import run_cli


_BUILD = "pipeline.build"
# Offline for sure, with an empty Keras cache: the ImageNet download must fail.
_OFFLINE = {"KERAS_HOME": "{tmp}/keras", "HTTPS_PROXY": "http://127.0.0.1:9",
            "https_proxy": "http://127.0.0.1:9"}


# The build's own validation, run in this process: each case fails before any training.
_BUILD_CASES = [
    (["--data_format=ham10000", "--data_dir=/nonexistent", "--output_dir=/tmp/x"],
     "--metadata_csv is required"),
    (["--data_format=ham10000", "--data_dir=/nonexistent", "--metadata_csv=/nope.csv",
      "--output_dir={tmp}/o"], "image directory not found"),
    (["--data_format=folders", "--data_dir={tmp}/empty", "--output_dir={tmp}/o"],
     "no class folders found"),
    # Real data flags with the default (synthetic) format: refused, not silently ignored.
    (["--data_dir={tmp}/empty", "--metadata_csv={tmp}/m.csv", "--output_dir={tmp}/o"],
     "--data_dir, --metadata_csv given, but --data_format=synthetic does not read it"),
    (["--data_format=folders", "--data_dir={tmp}/fake", "--output_dir={tmp}/o"],
     "no usable image: 4 skipped (4 x not a readable image"),
    (["--weights=/no/such.h5", "--output_dir={tmp}/o"], "--weights='/no/such.h5': no such file"),
    (["--output_dir=/proc/x"], "/proc/x"),
    (["--output_dir={tmp}/notes.txt/o"], "choose a writable --output_dir"),
    (["--variants=float32", "--output_dir={tmp}/o"], "must include int8"),
    # Caught right after the data stage, before any training.
    (["--malignant_classes=mel", "--set=data.synthetic_per_class=10", "--image_size=32",
      "--output_dir={tmp}/o"], "--malignant_classes: mel not among the dataset's labels"),
    (["--referral_sensitivity=1.0", "--output_dir={tmp}/o"], "--referral_sensitivity=1.0"),
    (["--set=gate.max_flip_margin=0", "--output_dir={tmp}/o"], "gate.max_flip_margin"),
    (["--set=gate.min_wrong_lead=1.5", "--output_dir={tmp}/o"], "gate.min_wrong_lead"),
    # --set: a recipe field by its path, type-checked; a field with a flag takes the flag.
    (["--set=train.crt_cc=1", "--output_dir={tmp}/o"], "--set=train.crt_cc=1: not a recipe field"),
    (["--set=train.crt_c=high", "--output_dir={tmp}/o"],
     "--set=train.crt_c=high: train.crt_c takes a float"),
    (["--set=data.image_size=64", "--output_dir={tmp}/o"],
     "data.image_size has its own flag; give --image_size"),
    (["--qat_lr=0.1", "--output_dir={tmp}/o"],
     "--qat_lr is now --set=train.qat.learning_rate=VALUE"),
    (["--set=train.crt_c=0", "--output_dir={tmp}/o"], "train.crt_c=0.0 must be > 0"),
    (["--set=train.finetune_class_weight=sqrtt", "--output_dir={tmp}/o"],
     "train.finetune_class_weight='sqrtt' is not valid; use one of: balanced, none, sqrt"),
    # A display-names file that the metadata stage could not read is refused before training.
    (["--display_names={tmp}/notes.txt", "--output_dir={tmp}/o"],
     "notes.txt: cannot read display names: it must be JSON"),
    (["--display_names={tmp}/names.json", "--output_dir={tmp}/o"],
     "names.json: label 'nv': display names must be JSON"),
    (["--data_format=folders", "--data_dir={tmp}/notes.txt", "--output_dir={tmp}/o"],
     "notes.txt: is a file; --data_dir takes a folder"),
    (["--data_format=csv", "--output_dir=/tmp/x"], "hmnist_csv"),  # The valid values, named.
]
# The real command lines, each in its own process: the other entry points, and a few of the
# build's (the offline download needs its own Keras cache, read when Keras is imported).
_SUBPROCESS_CASES = [
    (_BUILD, ["--weights=imagenet", "--set=data.synthetic_per_class=10", "--image_size=32",
              "--alpha=0.35", "--output_dir={tmp}/o"],
     "--weights=imagenet: the ImageNet weights could not be downloaded", _OFFLINE),
    (_BUILD, ["--alpha=0.6", "--output_dir={tmp}/o"], "not a MobileNetV2 width", None),
    # An option that was measured and removed is named, not silently ignored.
    (_BUILD, ["--finetune_runs=2", "--output_dir={tmp}/o"], "--finetune_runs was removed", None),
    ("pipeline.predict", ["--model={tmp}/notes.txt", "{tmp}/notes.txt"],
     "notes.txt: not a TFLite model", None),
    ("benchmarks.latency", ["--model={tmp}/notes.txt", "--threads=0"], "--threads=0", None),
    ("pipeline.serve", [], "give --model=M.tflite or --build_dir=BUILD", None),
    ("benchmarks.latency", ["--model={tmp}/notes.txt"], "notes.txt: not a loadable TFLite model",
     None),
    ("benchmarks.accuracy", ["--build_dir={tmp}/unfinished"],
     "unfinished: the build has no exported model yet", None),
    ("pipeline.serve", ["--build_dir={tmp}/empty"], "no config.json, splits.csv", None),
    ("benchmarks.crossval", ["--build_flagfile={tmp}/notes.txt", "--only_folds=5"],
     "--only_folds: 5 is not a fold of --folds=5", None),
    ("benchmarks.learning_curve", ["--work_dir={tmp}/empty", "--work_dir={tmp}/unfinished",
                                   "--output_json={tmp}/lc.json"],
     "--work_dir={tmp}/empty: no finished fold", None),
    ("pipeline.serve", ["--model={tmp}/notes.txt", "--port=0"], "not a TFLite model", None),
]


def _user_files(tmp_path):
  """The files the bad invocations point at."""
  (tmp_path / "empty").mkdir()
  (tmp_path / "notes.txt").write_text("not a model\n")
  (tmp_path / "names.json").write_text('{"mel": "Melanoma", "nv": ["Nevus"]}')
  unfinished = tmp_path / "unfinished"  # A build stopped after its data stage.
  unfinished.mkdir()
  BuildConfig().save(str(unfinished / "config.json"))
  (unfinished / "report.json").write_text('{"name": "unfinished"}')
  (unfinished / "labels.txt").write_text("a\nb\n")
  for cls in ("a", "b"):  # Files named .jpg that are not images.
    (tmp_path / "fake" / cls).mkdir(parents=True)
    for i in range(2):
      (tmp_path / "fake" / cls / f"{i}.jpg").write_text("not an image")


def run_build_in_process(args):
  """pipeline.build's parse and main, as its command line runs them: the exit message (a
  traceback would fail the caller's pytest.raises)."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  from pipeline import build  # pylint: disable=g-import-not-at-top
  flags.FLAGS.unparse_flags()
  try:
    with pytest.raises(SystemExit) as exit_info:
      build.main(build.parse_flags([_BUILD, *args]))
  finally:
    flags.FLAGS.unparse_flags()
  return str(exit_info.value.code)


@pytest.mark.parametrize("args,needle", _BUILD_CASES)
def test_bad_build_flags_are_one_clear_line(tmp_path, args, needle):
  _user_files(tmp_path)
  message = run_build_in_process([a.format(tmp=tmp_path) for a in args])
  assert message.startswith(f"{_BUILD}: error: ") and needle in message, message
  assert "\n" not in message


@pytest.mark.parametrize("module,args,needle,env", _SUBPROCESS_CASES)
def test_bad_invocation_is_one_clear_line(tmp_path, module, args, needle, env):
  _user_files(tmp_path)
  env = {k: v.format(tmp=tmp_path) for k, v in (env or {}).items()}
  needle = needle.format(tmp=tmp_path)
  proc = run_cli(["-m", module, *[a.format(tmp=tmp_path) for a in args]], env=env)
  assert proc.returncode != 0
  last = proc.stderr.strip().splitlines()[-1]
  assert last.startswith(f"{module}: error: ") and needle in last, proc.stderr[-3000:]
  assert "Traceback" not in proc.stderr
  if module.startswith("benchmarks."):  # Nothing else: no TensorFlow or CUDA start-up lines.
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_a_bad_display_names_file_stops_the_build_before_it_writes_anything(tmp_path):
  """The metadata stage reads --display_names after training: the build reads it first."""
  (tmp_path / "names.json").write_text("[1, 2]")
  message = run_build_in_process([
      f"--display_names={tmp_path / 'names.json'}", f"--output_dir={tmp_path / 'o'}",
      "--set=data.synthetic_per_class=10", "--image_size=32", "--alpha=0.35", "--weights=none"])
  assert "not a JSON list" in message
  assert not (tmp_path / "o").exists()


def test_helpfull_lists_at_most_30_grouped_flags_of_the_build():
  proc = run_cli(["-m", "pipeline.build", "--helpfull"])
  assert proc.returncode == 1, proc.stderr  # absl exits 1 after printing --helpfull.
  ours = proc.stdout.split("pipeline/build.py:")[1].split("\nabsl.")[0]
  flags = [line.split(":")[0].strip() for line in ours.splitlines() if line.startswith("  --")]
  assert len(flags) <= 30, flags
  for flag in ("--data_format", "--stop_after", "--finetune_layers", "--[no]resume",
               "--strategy", "--malignant_classes", "--referral_sensitivity", "--set",
               "--[no]overwrite"):
    assert flag in flags, flag
  # Each help line names its group; absl adds the default.
  assert all(f"--{n}" in ours for n in ("image_size", "qat_epochs"))
  for group in ("[data]", "[training]", "[export]", "[quality]", "[run]"):
    assert group in ours, group


def test_flags_txt_and_config_json_both_reproduce_the_config(tmp_path):
  from pipeline.config import CONFIG_FILE, BuildConfig
  flags = ["--image_size=40", "--set=data.synthetic_classes=3",
           "--set=data.synthetic_per_class=12", "--set=train.augment=false",
           "--malignant_classes=red", "--set=train.finetune.label_smoothing=0.05",
           "--variants=int8,float32", "--set=train.class_weight=balanced",
           "--set=gate.max_flip_margin=0.3", "--set=gate.min_wrong_lead=0.15",
           "--stop_after=data"]
  first = run_cli(["-m", "pipeline.build", *flags, f"--output_dir={tmp_path}/a"])
  assert first.returncode == 0, first.stderr[-2000:]
  # TensorFlow's CUDA/XLA registration lines stay off the terminal (--verbose shows them).
  for noise in ("cuInit", "cuDNN", "computation placer", "absl::InitializeLog"):
    assert noise not in first.stderr, first.stderr[-2000:]
  again = run_cli(["-m", "pipeline.build", f"--flagfile={tmp_path}/a/flags.txt",
                   f"--output_dir={tmp_path}/b", "--stop_after=data"])
  assert again.returncode == 0, again.stderr[-2000:]
  a = BuildConfig.load(str(tmp_path / "a" / CONFIG_FILE))
  assert a == BuildConfig.load(str(tmp_path / "b" / CONFIG_FILE))
  # The flags reached the recipe (each phase has its own label smoothing).
  assert (a.data.image_size, a.data.synthetic_classes, a.train.augment,
          a.referral.malignant_classes, a.train.finetune.label_smoothing,
          a.train.qat.label_smoothing, a.export.variants, a.train.class_balance,
          a.gate.max_flip_margin, a.gate.min_wrong_lead) == (
              40, 3, False, ("red",), 0.05, 0.1, ("int8", "float32"), "balanced", 0.3, 0.15)
  assert "--resume" not in open(tmp_path / "a" / "flags.txt").read()
  # config.json is exactly the recipe, and a field this version does not know is an error.
  saved = json.load(open(tmp_path / "a" / CONFIG_FILE))
  assert BuildConfig.from_dict(saved) == a
  # A record saved before a field whose default changed reads as that build ran.
  del saved["train"]["finetune_class_weight"]  # Older builds; the default is now sqrt.
  assert BuildConfig.from_dict(saved).train.finetune_class_weight == ""
  assert "finetune_class_weight" not in saved["train"]  # The caller's record is left as it was.
  saved["train"]["augmentation"] = True
  with pytest.raises(PipelineError, match="unknown field.*augmentation"):
    BuildConfig.from_dict(saved)
  # A removed option reads as today's recipe at the value builds ran with, else one line.
  del saved["train"]["augmentation"]
  saved["train"]["finetune_runs"] = 1
  assert BuildConfig.from_dict(saved).train == BuildConfig.from_dict(
      {**saved, "train": {k: v for k, v in saved["train"].items() if k != "finetune_runs"}}).train
  saved["train"]["finetune_runs"] = 3
  with pytest.raises(PipelineError, match="train.finetune_runs = 3, an option this version"):
    BuildConfig.from_dict(saved)
