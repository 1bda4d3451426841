"""Training, split by responsibility (each phase takes its own PhaseConfig).

  inputs.py  tf.data over a split, class balance (weights, oversampling), augmentation
  losses.py  cross-entropy and logit-adjusted cross-entropy
  fit.py     the resumable, checkpointing fit loop and best-epoch choice; Context, strategy
  phases.py  transfer (frozen backbone) and fine-tuning
  soup.py    several fine-tunes of the same transfer weights, averaged into one model
  qat.py     quantization-aware training: calibration, depthwise emulation, distillation
"""
