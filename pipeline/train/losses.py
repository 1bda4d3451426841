"""The training loss: cross-entropy (class balance comes as per-class sample weights)."""

from pipeline.tf_compat import keras


def classification_loss(label_smoothing: float) -> keras.losses.Loss:
  """Categorical cross-entropy with `label_smoothing` (per-class weights come with the
  batches, from inputs.class_weights)."""
  return keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing)
