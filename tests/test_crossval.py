"""benchmarks.crossval: the folds come from the recipe's own data stage (a build) and never
touch its test split. The parts that build nothing: tests/test_crossval_summary.py."""

from benchmarks import crossval
from pipeline.data import splits as splits_lib
from pipeline.data.readers import read_csv


def test_folds_leave_the_recipes_test_split_out(tmp_path):
  flagfile = tmp_path / "recipe.flags"
  flagfile.write_text("--data_format=synthetic\n--set=data.synthetic_classes=3\n"
                      "--set=data.synthetic_per_class=20\n--image_size=32\n")
  paths = crossval.write_fold_splits(str(flagfile), 3, str(tmp_path / "cv"), print)
  recipe, _ = read_csv(str(tmp_path / "cv" / "split" / "splits.csv"), ("key", "split"))
  test = {r["key"] for r in recipe if r["split"] == "test"}
  held_out = []
  for path in paths:
    rows, _ = read_csv(path, splits_lib.COLUMNS)
    assert {r["key"] for r in rows if r["split"] == "unused"} == test
    held_out += [r["key"] for r in rows if r["split"] == "test"]
  assert sorted(held_out) == sorted({r["key"] for r in recipe} - test)  # Each once.
