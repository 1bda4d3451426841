"""Training, split by responsibility (each phase takes its own PhaseConfig).

  inputs.py   tf.data over a split, class weights, augmentation
  losses.py   the cross-entropy every float phase trains with
  fit.py      the resumable, checkpointing fit loop and best-epoch choice; Context, strategy
  phases.py   transfer (frozen backbone) and fine-tuning
  crt.py      the class-balanced classifier re-fit on the frozen features
  qat.py      quantization-aware training: calibration, depthwise emulation, distillation
  cluster.py  multi-worker: TF_CONFIG, who writes what, a lost peer
"""
