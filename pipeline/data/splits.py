"""Lesion-disjoint, class-stratified train/val/test splits, and splits.csv (read and written
with the csv module)."""

import collections
import csv
import io
import os
from typing import Dict, List, Sequence, Tuple

import numpy as np

from pipeline.data.dataset import SPLITS, UNUSED, DataBundle, Example
from pipeline.data.readers import read_csv
from pipeline.errors import PipelineError

FILE_NAME = "splits.csv"
COLUMNS = ("key", "label", "group", "split")


def assign(examples: Sequence[Example], val_fraction: float, test_fraction: float,
                   seed: int) -> Dict[str, str]:
  """Assigns every example to train/val/test, stratified by class and grouped.

  All examples of a group (a lesion) go to the same split. Groups are shuffled per class
  with `seed` and dealt out so each split gets its share of each class's images. A split
  shipped with the dataset (given_split="test") is kept and val is taken from the rest.

  Args:
    examples: the usable examples.
    val_fraction: share of each class for validation.
    test_fraction: share of each class for test (ignored where a test split is given).
    seed: makes the assignment repeatable.

  Returns:
    {example key: split name}.

  Raises:
    PipelineError: a class has too few groups to appear in every split.
  """
  assignment = {e.key: "test" for e in examples if e.given_split == "test"}
  has_given_test = bool(assignment)
  group_members, by_class = _groups_by_class([e for e in examples if e.given_split != "test"])
  rng = np.random.default_rng(seed)
  needed = ("val",) if has_given_test else ("val", "test")
  for label in sorted(by_class):
    groups = by_class[label]
    if len(groups) < len(needed) + 1:
      raise PipelineError(
          f"class {label!r} has {len(groups)} lesion(s)/image(s); at least {len(needed) + 1} "
          "are needed to put one in each split. Add images, or remove the class")
    order = [groups[i] for i in rng.permutation(len(groups))]
    sizes = {g: len(group_members[g]) for g in order}
    total = sum(sizes.values())
    targets = {"val": val_fraction * total,
               "test": 0.0 if has_given_test else test_fraction * total}
    for split in needed:
      for g in _take_groups(order, sizes, targets[split]):
        for m in group_members[g]:
          assignment[m.key] = split
    for g in order:
      for m in group_members[g]:
        assignment[m.key] = "train"
  return assignment


def _take_groups(order: List[str], sizes: Dict[str, int], target: float) -> List[str]:
  """Pops groups off the front of `order` for one split: at least one, then more while the
  split stays nearest its `target` images; always leaves one group (for training)."""
  taken, filled = [], 0
  while len(order) > 1 and (filled == 0 or filled + sizes[order[0]] / 2 <= target):
    taken.append(order.pop(0))
    filled += sizes[taken[-1]]
  return taken


def _groups_by_class(examples: Sequence[Example]
                     ) -> Tuple[Dict[str, List[Example]], Dict[str, List[str]]]:
  """({group: its examples}, {label: its groups, sorted}). A group (a lesion) takes its most
  common label; ties break by name for determinism."""
  group_members: Dict[str, List[Example]] = collections.defaultdict(list)
  for e in examples:
    group_members[e.group].append(e)
  by_class: Dict[str, List[str]] = collections.defaultdict(list)
  for group in sorted(group_members):
    counts = collections.Counter(m.label for m in group_members[group])
    by_class[sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[0][0]].append(group)
  return group_members, by_class


FOLD_STREAM = 2  # cross_validation_folds' draws are independent of the split's (same seed).


def cross_validation_folds(examples: Sequence[Example], folds: int, val_fraction: float,
                           test_fraction: float, seed: int) -> List[Dict[str, str]]:
  """Lesion-grouped, class-stratified k-fold assignments of the non-test lesions.

  The test split is the one `assign` gives with the same fractions and seed (the plain
  build's test split); it is UNUSED in every fold, so no fold ever sees it. The other
  lesions are dealt into `folds` folds per class. In fold i, fold i is "test" (the held-out
  lesions the fold's build scores), `val_fraction` of each class's other lesions are "val"
  and the rest "train".

  Returns:
    One {example key: split name} per fold.

  Raises:
    PipelineError: fewer than 2 folds, or a class with fewer lesions than folds.
  """
  if folds < 2:
    raise PipelineError(f"--folds={folds}: cross-validation needs at least 2 folds")
  base = assign(examples, val_fraction, test_fraction, seed)
  pool = [e for e in examples if base[e.key] != "test"]
  group_members, by_class = _groups_by_class(pool)
  rng = np.random.default_rng([seed, FOLD_STREAM])
  fold_of: Dict[str, int] = {}
  for label in sorted(by_class):
    groups = by_class[label]
    if len(groups) < folds:
      raise PipelineError(f"class {label!r} has {len(groups)} lesion(s) outside the test split; "
                          f"{folds} folds need at least {folds}: use fewer --folds")
    filled = [0] * folds
    for i in rng.permutation(len(groups)):  # Each group to the emptiest fold of its class.
      fold = int(np.argmin(filled))
      fold_of[groups[i]] = fold
      filled[fold] += len(group_members[groups[i]])
  share = val_fraction / (1.0 - test_fraction)  # val's share of the non-test lesions, as in assign.
  assignments = []
  for fold in range(folds):
    out = {e.key: UNUSED for e in examples if base[e.key] == "test"}
    for e in pool:
      out[e.key] = "test" if fold_of[e.group] == fold else "train"
    rest = [e for e in pool if out[e.key] == "train"]
    members, classes = _groups_by_class(rest)
    val_rng = np.random.default_rng([seed, FOLD_STREAM, fold])
    for label in sorted(classes):
      groups = [classes[label][i] for i in val_rng.permutation(len(classes[label]))]
      sizes = {g: len(members[g]) for g in groups}
      for g in _take_groups(groups, sizes, share * sum(sizes.values())):
        for m in members[g]:
          out[m.key] = "val"
    assignments.append(out)
  return assignments


def assignment_csv(examples: Sequence[Example], assignment: Dict[str, str]) -> str:
  """splits.csv text of an assignment made before decoding (a --split_file to build from)."""
  return _csv((e.key, e.label, e.group, assignment[e.key]) for e in examples)


SUBSAMPLE_STREAM = 1  # subsample_train's draws are independent of the split's (same seed).


def subsample_train(examples: Sequence[Example], assignment: Dict[str, str], fraction: float,
                    seed: int) -> Dict[str, str]:
  """Keeps `fraction` of each class's training lesions (at least one), drawn with `seed`;
  the others' images become UNUSED. Validation and test stay as they are, so builds on
  fractions of the training data score on the same images (a learning curve).

  Returns:
    A new {example key: split name}; `assignment` itself when fraction >= 1.
  """
  if fraction >= 1:
    return assignment
  group_members, by_class = _groups_by_class(
      [e for e in examples if assignment.get(e.key) == "train"])
  rng = np.random.default_rng([seed, SUBSAMPLE_STREAM])
  out = dict(assignment)
  for label in sorted(by_class):
    groups = by_class[label]
    keep = max(1, round(fraction * len(groups)))
    for i in rng.permutation(len(groups))[keep:]:
      for m in group_members[groups[i]]:
        out[m.key] = UNUSED
  return out


def read_assignment(path: str) -> Dict[str, str]:
  """Reads a splits.csv into {key: split}, checking the split names.

  Raises:
    PipelineError: missing file, missing columns, or unknown split names.
  """
  if not os.path.isfile(path):
    raise PipelineError(f"{path}: split file not found; check --split_file")
  rows, _ = read_csv(path, ("key", "split"))
  assignment = {r["key"]: r["split"] for r in rows}
  bad = [s for s in set(assignment.values()) if s not in SPLITS + (UNUSED,)]
  if bad:
    raise PipelineError(f"{path}: unknown split name(s) {', '.join(sorted(bad))}; use "
                        f"{', '.join(SPLITS + (UNUSED,))}")
  return assignment


def assignment_for(path: str, examples: Sequence[Example]) -> Dict[str, str]:
  """The saved assignment of every usable example; all of them must be in the file."""
  assignment = read_assignment(path)
  missing = [e.key for e in examples if e.key not in assignment]
  if missing:
    raise PipelineError(f"{path}: {len(missing)} usable image(s) are not in the split file "
                        f"(first: {missing[0]}); it belongs to another dataset, or drop "
                        "--split_file to split anew")
  return {e.key: assignment[e.key] for e in examples}


def to_csv(bundle: DataBundle) -> str:
  """splits.csv of a bundle: key, label, group, split (one row per image; an image the build
  left out is in split UNUSED)."""
  rows = [(key, bundle.labels[label], group, name) for name, split in bundle.splits.items()
          for key, label, group in zip(split.keys, split.labels, split.groups)]
  return _csv(rows + [(key, label, group, UNUSED) for key, label, group in bundle.unused])


def _csv(rows) -> str:
  """splits.csv text of (key, label, group, split) rows, with the csv module."""
  buffer = io.StringIO()
  writer = csv.writer(buffer, lineterminator="\n")
  writer.writerow(COLUMNS)
  writer.writerows(rows)
  return buffer.getvalue()
