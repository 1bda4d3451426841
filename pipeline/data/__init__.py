"""The dataset: one reader per format behind one pure `load`, and lesion-disjoint splits.

  dataset.py  Example, Split, DataBundle, InputNotes
  readers.py  ham10000 (CSV + image folders), folders, hmnist_csv
  splits.py   grouped, stratified split assignment; splits.csv
  loading.py  load(config, seed, ...) -> DataBundle: read, decode, label, split
"""

from pipeline.data.dataset import (SPLITS, DataBundle, Example, InputNotes, NoUsableImages,
                                   Split, UnknownClasses)
from pipeline.data.loading import ALL, load

__all__ = ["SPLITS", "DataBundle", "Example", "InputNotes", "NoUsableImages", "Split",
           "UnknownClasses", "ALL", "load"]
