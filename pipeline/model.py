"""The classifier: a MobileNetV2 backbone with a new head, as one flat functional model."""

from typing import Optional

from pipeline import preprocessing
from pipeline.errors import PipelineError
from pipeline.tf_compat import keras, tf

HEAD_LAYERS = ("avg_pool", "head_dropout", "classifier")


def build_classifier(num_classes: int, image_size: int, alpha: float, weights: str,
                     dropout: float, seed: Optional[int] = None) -> keras.Model:
  """Builds MobileNetV2 (no top) + global pooling + dropout + softmax dense.

  The head is built on `base.output`, so the result is one flat functional model: tfmot
  cannot quantize a model nested inside another.

  Args:
    num_classes: output classes.
    image_size: square input size.
    alpha: MobileNetV2 width multiplier.
    weights: "imagenet" (downloads), "none" (random init) or a no-top .h5 path.
    dropout: dropout rate before the classifier.
    seed: initializer seed for the head.

  Returns:
    An uncompiled model whose input is normalized float RGB (see preprocessing).
  """
  keras_weights = None if weights == "none" else weights
  try:
    base = keras.applications.MobileNetV2(input_shape=(image_size, image_size, 3), alpha=alpha,
                                          include_top=False, weights=keras_weights)
  except (ValueError, OSError) as e:
    raise PipelineError(f"cannot load backbone weights {weights!r}: {str(e).splitlines()[0]}; "
                        "use a MobileNetV2 no-top .h5 that matches --alpha, or --weights=none")
  except Exception as e:  # pylint: disable=broad-except  (keras raises a bare Exception)
    if weights != "imagenet" or "URL fetch failure" not in str(e):
      raise
    raise PipelineError("--weights=imagenet: the ImageNet weights could not be downloaded "
                        f"({str(e).splitlines()[0]}); without network access give "
                        "--weights=PATH to a local MobileNetV2 no-top .h5 (e.g. "
                        "../shared/weights/mobilenet_v2_1.0_imagenet_no_top.h5)") from e
  x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(base.output)
  x = keras.layers.Dropout(dropout, seed=seed, name="head_dropout")(x)
  outputs = keras.layers.Dense(
      num_classes, activation="softmax", name="classifier",
      kernel_initializer=keras.initializers.GlorotUniform(seed=seed))(x)
  return keras.Model(base.input, outputs, name=f"mobilenetv2_{alpha}_{image_size}")


def init_batchnorm_statistics(model: keras.Model, inputs) -> None:
  """Sets every BatchNormalization's moving statistics from one batch of real inputs.

  A randomly initialised backbone (--weights=none) has identity statistics, and with BN
  frozen in inference mode its activations shrink towards zero block after block (about
  1e-11 at the output of a 0.35 MobileNetV2): the head would see constant features. One
  training-mode pass with momentum 0 stores each layer's batch statistics, computed on
  the already-normalized activations before it, so inference mode is then well scaled.

  Args:
    model: the classifier.
    inputs: a batch of normalized training images.
  """
  bns = [l for l in model.layers if isinstance(l, keras.layers.BatchNormalization)]
  momenta = [l.momentum for l in bns]
  try:
    for layer in bns:
      layer.momentum = 0.0
    model(inputs, training=True)
  finally:
    for layer, momentum in zip(bns, momenta):
      layer.momentum = momentum


def backbone_layers(model: keras.Model):
  """The backbone's layers in graph order (everything but the input and the head)."""
  return [l for l in model.layers
          if l.name not in HEAD_LAYERS and not isinstance(l, keras.layers.InputLayer)]


def set_trainable(model: keras.Model, finetune_layers: int) -> int:
  """Freezes the backbone except its top `finetune_layers` layers; the head stays trainable.

  BatchNormalization layers stay frozen everywhere: a frozen Keras 2 BN layer runs in
  inference mode, which keeps the pretrained statistics on small fine-tuning sets.

  Returns:
    The number of trainable weights tensors.
  """
  layers = backbone_layers(model)
  first = max(len(layers) - finetune_layers, 0)
  for i, layer in enumerate(layers):
    layer.trainable = i >= first and not isinstance(layer, keras.layers.BatchNormalization)
  for name in HEAD_LAYERS:
    model.get_layer(name).trainable = True
  return len(model.trainable_weights)


def feature_extractor(model: keras.Model) -> keras.Model:
  """The backbone plus pooling: image -> pooled features, sharing the model's weights."""
  return keras.Model(model.input, model.get_layer("avg_pool").output)


def dihedral_tta_model(model: keras.Model, quantized: bool = False) -> keras.Model:
  """`model` averaged over the 8 dihedral views of each input image, in one graph: one
  image in, one probability vector out, 8 images' worth of compute inside (the shipped
  model_int8_tta8.tflite).

  With `quantized` (a QAT model), the mean is fake-quantized to the grid of TFLite's int8
  softmax output (scale 1/256 over [0, 255/256]): every tensor then carries its range, so the
  int8 conversion needs no calibration pass over the 8 views.
  """
  image = keras.Input(model.input_shape[1:], name="image")
  views = keras.layers.Lambda(preprocessing.dihedral_stack_tf, name="dihedral_views")(image)
  probs = keras.layers.Lambda(preprocessing.dihedral_mean_tf, name="dihedral_mean")(model(views))
  if quantized:
    probs = keras.layers.Lambda(lambda p: tf.quantization.fake_quant_with_min_max_args(
        p, min=0.0, max=255 / 256, num_bits=8), name="dihedral_mean_quant")(probs)
  return keras.Model(image, probs, name=model.name + "_tta8")
