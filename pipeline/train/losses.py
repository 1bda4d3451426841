"""Training losses: cross-entropy, or logit-adjusted cross-entropy for long-tailed classes."""

import numpy as np

from pipeline.tf_compat import keras, tf


@keras.saving.register_keras_serializable(package="pipeline")
class LogitAdjustedCrossentropy(keras.losses.Loss):
  """Cross-entropy of softmax(logits + tau * log prior) for a model that outputs softmax(logits).

  Logit adjustment (Menon et al., "Long-tail learning via logit adjustment", ICLR 2021):
  training against prior-shifted logits makes the model's own outputs estimate
  p(y|x) / prior(y), whose argmax maximizes balanced accuracy, without per-class loss
  weights (which multiply rare images' gradients by up to 15x on HAM10000). With the
  softmax already applied, softmax(z + tau * log prior) = p * prior^tau / sum(p * prior^tau).
  """

  def __init__(self, priors, tau: float = 1.0, label_smoothing: float = 0.0,
               name: str = "logit_adjusted_crossentropy", **kwargs):
    super().__init__(name=name, **kwargs)
    self.priors = [float(p) for p in priors]
    self.tau = float(tau)
    self.label_smoothing = float(label_smoothing)

  def call(self, y_true, y_pred):
    shift = tf.constant(np.power(np.maximum(self.priors, 1e-12), self.tau), y_pred.dtype)
    adjusted = y_pred * shift
    adjusted = adjusted / tf.reduce_sum(adjusted, axis=-1, keepdims=True)
    return keras.losses.categorical_crossentropy(y_true, adjusted,
                                                 label_smoothing=self.label_smoothing)

  def get_config(self):
    return {**super().get_config(), "priors": self.priors, "tau": self.tau,
            "label_smoothing": self.label_smoothing}


def classification_loss(priors, class_balance: str,
                        label_smoothing: float) -> keras.losses.Loss:
  """The training loss for a class balance (per-class weights come with the batches).

  Args:
    priors: each class's share of the training split (used by "logit_adjusted").
    class_balance: "balanced", "none", "logit_adjusted", "sqrt" or "oversample".
    label_smoothing: as in keras.losses.CategoricalCrossentropy.
  """
  if class_balance == "logit_adjusted":
    return LogitAdjustedCrossentropy(priors, label_smoothing=label_smoothing)
  return keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing)
