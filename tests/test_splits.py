"""Lesion-grouped, class-stratified splits and the cross-validation folds that never touch the
test split."""

import collections

import numpy as np
import pytest

from pipeline.data import splits
from pipeline.data.dataset import UNUSED, Example
from pipeline.errors import PipelineError

pytestmark = pytest.mark.fast


def _examples(lesions=600, seed=0):
  """Lesions of 1-3 images each, 70/20/10% over three classes."""
  rng = np.random.default_rng(seed)
  out = []
  for g in range(lesions):
    label = str(rng.choice(["nv", "mel", "df"], p=[0.7, 0.2, 0.1]))
    out += [Example(key=f"{g}_{i}", label=label, group=f"L{g}")
            for i in range(rng.integers(1, 4))]
  return out


def test_cross_validation_folds_partition_the_non_test_lesions():
  examples = _examples()
  base = splits.assign(examples, 0.1, 0.2, seed=42)
  folds = splits.cross_validation_folds(examples, 5, 0.1, 0.2, seed=42)
  assert len(folds) == 5
  for e in examples:  # Each non-test image is held out exactly once; test images never.
    held_out = sum(f[e.key] == "test" for f in folds)
    assert held_out == (0 if base[e.key] == "test" else 1)
    assert all(f[e.key] == UNUSED for f in folds) == (base[e.key] == "test")
  for f in folds:
    by_group = collections.defaultdict(set)
    for e in examples:
      by_group[e.group].add(f[e.key])
    assert all(len(s) == 1 for s in by_group.values())  # A lesion never crosses splits.
    counts = collections.Counter((e.label, f[e.key]) for e in examples)
    for label in ("nv", "mel", "df"):  # Every class in every split of every fold.
      assert all(counts[(label, s)] > 0 for s in ("train", "val", "test"))
  # Held-out folds are of similar size, class by class.
  sizes = [sum(f[e.key] == "test" for e in examples if e.label == "nv") for f in folds]
  assert max(sizes) - min(sizes) <= 6
  assert folds == splits.cross_validation_folds(examples, 5, 0.1, 0.2, seed=42)


def test_cross_validation_folds_keep_a_given_test_split_out():
  examples = [Example(e.key, e.label, e.group, given_split="test" if i % 5 == 0 else "")
              for i, e in enumerate(_examples(200))]
  for f in splits.cross_validation_folds(examples, 3, 0.1, 0.2, seed=1):
    assert all(f[e.key] == UNUSED for e in examples if e.given_split == "test")


def test_cross_validation_refuses_too_few_lesions_for_the_folds():
  with pytest.raises(PipelineError, match="use fewer --folds"):
    splits.cross_validation_folds(_examples(40), 20, 0.1, 0.2, seed=0)
  with pytest.raises(PipelineError, match="at least 2 folds"):
    splits.cross_validation_folds(_examples(40), 1, 0.1, 0.2, seed=0)


def test_a_fold_assignment_is_a_split_file_the_build_reads(tmp_path):
  examples = _examples(100)
  fold = splits.cross_validation_folds(examples, 3, 0.1, 0.2, seed=0)[0]
  path = tmp_path / "splits.csv"
  path.write_text(splits.assignment_csv(examples, fold))
  assert splits.assignment_for(str(path), examples) == fold
