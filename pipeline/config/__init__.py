"""Typed build configuration: frozen dataclasses, validated once, saved as config.json.

  choices.py  the closed sets of choices (formats, stages, variants, ...)
  fields.py   which fields are flags (pipeline.build generates its flags from them)
  data.py     DataConfig: the dataset and its split
  train.py    ModelConfig, PhaseConfig, TrainConfig: the model and how it trains
  export.py   ExportConfig, MetadataConfig: the TFLite files and what they say
  quality.py  GateConfig, ReferralConfig: what QA holds the build to
  build.py    BuildConfig (the recipe) and RunOptions (where and how far one run goes)
  readers.py  the first stage that reads each setting (what --rerun_from may change)
"""

from pipeline.config.build import (CONFIG_FILE, BuildConfig, RunOptions, build_files, replace,
                                   smoke_config, smoke_run)
from pipeline.config.choices import (BALANCE_NAMES, CLASS_WEIGHTS, DATA_FORMATS, IO_DTYPES,
                                     STAGES, STRATEGIES, VARIANTS, check_choice, stage_index)
from pipeline.config.data import DataConfig
from pipeline.config.export import ExportConfig, MetadataConfig, model_file_name
from pipeline.config.quality import DEFAULT_MALIGNANT_CLASSES, GateConfig, ReferralConfig
from pipeline.config.train import ModelConfig, PhaseConfig, TrainConfig

__all__ = ["BALANCE_NAMES", "CONFIG_FILE", "BuildConfig", "RunOptions", "build_files", "replace",
           "smoke_config", "smoke_run", "CLASS_WEIGHTS", "DATA_FORMATS", "IO_DTYPES",
           "STAGES", "STRATEGIES", "VARIANTS",
           "check_choice", "stage_index",
           "DataConfig", "ExportConfig", "MetadataConfig", "model_file_name",
           "DEFAULT_MALIGNANT_CLASSES", "GateConfig", "ReferralConfig", "ModelConfig",
           "PhaseConfig", "TrainConfig"]
