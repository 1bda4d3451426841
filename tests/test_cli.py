"""User mistakes give one clear line and a non-zero exit, never a traceback."""

import pytest

from tests.conftest import run_cli


@pytest.mark.parametrize("args,needle", [
    (["--data_format=ham10000", "--data_dir=/nonexistent", "--output_dir=/tmp/x"],
     "--metadata_csv is required"),
    (["--data_format=ham10000", "--data_dir=/nonexistent", "--metadata_csv=/nope.csv",
      "--output_dir={tmp}/o"], "image directory not found"),
    (["--data_format=folders", "--data_dir={tmp}/empty", "--output_dir={tmp}/o"],
     "no class folders found"),
    (["--weights=/no/such.h5", "--output_dir={tmp}/o"], "--weights='/no/such.h5': no such file"),
    (["--alpha=0.6", "--output_dir={tmp}/o"], "not a MobileNetV2 width"),
    (["--variants=float32", "--output_dir={tmp}/o"], "must include int8"),
    # Caught right after the data stage, before any training.
    (["--malignant_classes=mel", "--synthetic_per_class=10", "--image_size=32",
      "--output_dir={tmp}/o"], "--malignant_classes: mel not among the dataset's labels"),
    (["--referral_sensitivity=1.0", "--output_dir={tmp}/o"], "--referral_sensitivity=1.0"),
    (["--gate_max_flip_margin=0", "--output_dir={tmp}/o"], "--gate_max_flip_margin"),
])
def test_bad_build_input_is_one_clear_line(tmp_path, args, needle):
  (tmp_path / "empty").mkdir()
  proc = run_cli(["-m", "pipeline.build", *[a.format(tmp=tmp_path) for a in args]])
  assert proc.returncode != 0
  last = proc.stderr.strip().splitlines()[-1]
  assert last.startswith("pipeline.build: error: ") and needle in last, proc.stderr
  assert "Traceback" not in proc.stderr


def test_enum_flags_name_valid_values():
  proc = run_cli(["-m", "pipeline.build", "--data_format=csv", "--output_dir=/tmp/x"])
  assert proc.returncode != 0
  assert "ham10000" in proc.stderr and "hmnist_csv" in proc.stderr


def test_helpfull_lists_the_build_flags():
  proc = run_cli(["-m", "pipeline.build", "--helpfull"])
  assert proc.returncode in (0, 1)
  for flag in ("--data_format", "--stop_after", "--finetune_layers", "--io_dtype",
               "--[no]resume", "--strategy", "--gate_min_agreement", "--gate_mcnemar_alpha",
               "--gate_max_flip_margin", "--malignant_classes", "--referral_sensitivity"):
    assert flag in proc.stdout, flag
