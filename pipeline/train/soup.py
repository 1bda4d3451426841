"""Weight averaging of independent fine-tunes (a uniform model soup, Wortsman et al., ICML
2022): several fine-tunes of the same transfer weights, differing only in data order and
augmentation draws, averaged into one model that costs one model's time to run (BUILD.md
"Fine-tune soup" has what it measured on HAM10000)."""

from typing import List, Optional, Sequence, Tuple

import numpy as np

from pipeline import metrics
from pipeline.config import PhaseConfig
from pipeline.tf_compat import keras
from pipeline.train import inputs, phases
from pipeline.train.fit import Context, PhaseResult, duration


def average_weights(weight_lists: Sequence[List[np.ndarray]]) -> List[np.ndarray]:
  """The element-wise mean of several models' `get_weights()` (the same architecture).

  Raises:
    ValueError: fewer than one model, or models whose weights do not match in number or shape.
  """
  if not weight_lists:
    raise ValueError("no models to average")
  first = weight_lists[0]
  for other in weight_lists[1:]:
    if len(other) != len(first) or any(a.shape != b.shape for a, b in zip(first, other)):
      raise ValueError("models to average differ in architecture")
  return [np.mean([w[i] for w in weight_lists], axis=0).astype(first[i].dtype)
          for i in range(len(first))]


def run_finetunes(model: keras.Model, phase: PhaseConfig, layers: int, keep: str,
                  ctx: Context, runs: int) -> Tuple[List[PhaseResult], Optional[float]]:
  """Fine-tunes `model` `runs` times from the weights it holds (the transfer stage's), each run
  with its own data order and checkpoints (`phases.run_finetune`), and leaves it holding the
  mean of the runs' kept weights; with one run, the run itself.

  Args:
    model: the float classifier after transfer (trained in place).
    phase, layers, keep: as `phases.run_finetune`.
    ctx: what the phases share.
    runs: how many fine-tunes to average (TrainConfig.finetune_runs).

  Returns:
    (the runs' PhaseResults, the soup's validation balanced accuracy, or None for one run).
  """
  start = model.get_weights()
  results, kept = [], []
  for run in range(runs):
    if run:
      model.set_weights(start)
      spent = sum(r.seconds for r in results)
      ctx.log(f"finetune: run {run + 1}/{runs} from the transfer weights, its own data order "
              f"(about {duration(spent / run * (runs - run))} left for the runs to come)")
    results.append(phases.run_finetune(model, phase, layers, keep, ctx, run))
    kept.append(model.get_weights())
  if runs == 1:
    return results, None
  model.set_weights(average_weights(kept))
  val = ctx.bundle.splits["val"]
  probs = model.predict(inputs.eval_dataset(val, ctx.normalization, ctx.batch_size), verbose=0)
  score = metrics.argmax_balanced_accuracy(val.labels, probs)
  ctx.log(f"finetune: the model holds the mean of the {runs} runs' weights; val balanced "
          f"accuracy {score:.4f} (runs: "
          + ", ".join(_kept_val(r) for r in results) + ")")
  return results, score


def _kept_val(result: PhaseResult) -> str:
  """The validation balanced accuracy of the epoch a run kept ("-" when it ran none)."""
  scores = result.history.get("val_balanced_accuracy", [])
  return f"{scores[result.kept_epoch - 1]:.4f}" if 0 < result.kept_epoch <= len(scores) else "-"
