"""Quantization-aware training: the tfmot model, its calibrated ranges, per-channel depthwise
emulation, and distillation from the float model."""

import tensorflow_model_optimization as tfmot  # pylint: disable=g-bad-import-order
from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (  # pylint: disable=g-bad-import-order
    default_8bit_quantize_configs as configs)

from pipeline import model as model_lib
from pipeline.config import PhaseConfig
from pipeline.preprocessing import Normalization
from pipeline.tf_compat import keras, tf
from pipeline.train import inputs
from pipeline.train.fit import Context, PhaseResult, fit_phase


RANGE_KINDS = ("output", "post_activation", "pre_activation")


def activation_ranges(qat_model: keras.Model) -> dict:
  """Every quantized activation's range variables: {wrapped layer name: [(kind, min
  variable, max variable)]}, kind one of RANGE_KINDS (tfmot's variable-name suffixes)."""
  ranges = {}
  for wrapper in qat_model.layers:
    inner = getattr(wrapper, "layer", None)
    if inner is None:
      continue
    variables = {v.name.split("/")[-1].split(":")[0]: v for v in wrapper.non_trainable_weights}
    for kind in RANGE_KINDS:
      if f"{kind}_min" in variables:
        ranges.setdefault(inner.name, []).append(
            (kind, variables[f"{kind}_min"], variables[f"{kind}_max"]))
  return ranges


def calibrate_qat_ranges(qat_model: keras.Model, float_model: keras.Model, batches) -> int:
  """Starts the QAT model's activation ranges at the float model's real ranges.

  tfmot starts every activation range at [-6, 6] and moves it by an EMA with decay 0.999,
  so a short QAT schedule (a hundred steps) still mostly carries the initial range, which
  clips or wastes int8 resolution (on HAM10000 one QAT epoch from [-6, 6] cost 35 points of
  balanced accuracy). Here each quantized activation gets the min/max that the float
  model's same-named layer produces on real training images (PTQ-style calibration);
  QAT then refines them.

  Args:
    qat_model: from tfmot quantize_model(float_model).
    float_model: the float classifier it was made from.
    batches: normalized float input batches (real training images).

  Returns:
    The number of activation ranges set.
  """
  targets = activation_ranges(qat_model)
  float_names = {l.name for l in float_model.layers}
  names = [n for n in targets if n in float_names]
  if not names or not len(batches):
    return 0
  # Weight ranges (LastValueQuantizer) are only written by a training-mode call; until then
  # they too sit at [-6, 6]. One pass sets them exactly (activation EMAs move by 0.1%, and
  # are overwritten below).
  qat_model(batches[0], training=True)
  # pre_activation is the input of the layer's activation: recompute it from the layer's
  # input (only the Dense classifier has one, so this stays cheap).
  probe = keras.Model(float_model.input,
                      [float_model.get_layer(n).output for n in names] +
                      [float_model.get_layer(n).input for n in names])
  lo = {}
  hi = {}
  for batch in batches:
    outs = probe(batch, training=False)
    for i, name in enumerate(names):
      layer = float_model.get_layer(name)
      for kind, _, _ in targets[name]:
        if kind == "pre_activation":
          value = tf.matmul(outs[len(names) + i], layer.kernel) + layer.bias
        else:
          value = outs[i]
        key = (name, kind)
        lo[key] = min(lo.get(key, 0.0), float(tf.reduce_min(value)))
        hi[key] = max(hi.get(key, 0.0), float(tf.reduce_max(value)))
  count = 0
  for name in names:
    for kind, vmin, vmax in targets[name]:
      vmin.assign(tf.fill(tf.shape(vmin), lo[(name, kind)]))
      vmax.assign(tf.fill(tf.shape(vmax), hi[(name, kind)]))
      count += 1
  return count


class DepthwisePerChannelQuantizer(tfmot.quantization.keras.quantizers.Quantizer):
  """Symmetric int8 fake quantization of a depthwise kernel, one scale per channel.

  This is what TFLite does with depthwise weights (narrow range [-127, 127], scale
  max|w| / 127 per channel), so the QAT model trains against the int8 model it becomes.
  """

  def build(self, tensor_shape, name, layer):
    return {}

  def __call__(self, inputs, training, weights, **kwargs):
    # Kernel [kh, kw, channels, multiplier]: one scale per channel (axis 2). Plain ops with a
    # straight-through gradient, not a FakeQuant op: the converter would attach a FakeQuant's
    # scales to the wrong axis; here it folds the (already on-grid) weights and quantizes
    # them per-channel itself, to the same int8 values.
    scale = tf.stop_gradient(
        tf.maximum(tf.reduce_max(tf.abs(inputs), axis=[0, 1, 3], keepdims=True), 1e-8) / 127.0)
    return inputs + tf.stop_gradient(tf.round(inputs / scale) * scale - inputs)

  def get_config(self):
    return {}


class DepthwisePerChannelConfig(tfmot.quantization.keras.QuantizeConfig):
  """Per-channel depthwise kernels (see above), output left to the following BN + ReLU6.

  tfmot 0.8's own "per-axis" depthwise quantizer quantizes along the kernel's last axis,
  the depth multiplier (size 1): in effect per-tensor. Pretrained kernels with folded BN
  have very different per-channel scales, so their small channels vanish: on HAM10000 the
  fine-tuned model's tfmot QAT copy scored 0.19 balanced accuracy before any QAT step
  (float: 0.64), cosine 0.91 already after the first depthwise layer.
  """

  def get_weights_and_quantizers(self, layer):
    return [(layer.depthwise_kernel, DepthwisePerChannelQuantizer())]

  def get_activations_and_quantizers(self, layer):
    # No quantization point between the depthwise conv and its BatchNormalization: the
    # converter folds the BN into the conv only when nothing sits between them (with one
    # there, the int8 model kept 17 extra MUL + 17 ADD ops and ran 1.36x slower). The
    # ReLU6 after the BN is quantized, as in tfmot's own Conv+BN+ReLU pattern.
    return []

  def set_quantize_weights(self, layer, quantize_weights):
    layer.depthwise_kernel = quantize_weights[0]

  def set_quantize_activations(self, layer, quantize_activations):
    pass

  def get_output_quantizers(self, layer):
    return []

  def get_config(self):
    return {}


def quantize_model(float_model: keras.Model, finetune_layers: int,
                   normalization: Normalization, calibration_batches=()) -> keras.Model:
  """Wraps the trained float model for QAT (tfmot default 8-bit scheme).

  The architecture is never re-declared: tfmot clones `float_model` with its weights. The
  layers the fine-tune phase trained stay trainable; BN stays frozen (inference mode).

  Args:
    float_model: the fine-tuned float classifier.
    finetune_layers: how many top backbone layers QAT may train.
    normalization: the input normalization (pins the input quantizer's range).
    calibration_batches: normalized real training batches for `calibrate_qat_ranges`.

  Returns:
    The quantization-aware model.
  """
  model_lib.set_trainable(float_model, finetune_layers)
  qkeras = tfmot.quantization.keras

  # BatchNormalizations fed by a depthwise conv: the converter folds them into the conv.
  bn_after_depthwise = {
      l.name for l in float_model.layers
      if isinstance(l, keras.layers.BatchNormalization) and isinstance(
          l.inbound_nodes[0].inbound_layers, keras.layers.DepthwiseConv2D)}

  def annotate(layer):
    if isinstance(layer, keras.layers.InputLayer):
      return layer.__class__.from_config(layer.get_config())
    if isinstance(layer, keras.layers.DepthwiseConv2D):
      config = DepthwisePerChannelConfig()
    elif layer.name in bn_after_depthwise:
      config = configs.NoOpQuantizeConfig()
    else:
      config = None
    return qkeras.quantize_annotate_layer(layer.__class__.from_config(layer.get_config()),
                                          quantize_config=config)

  annotated = keras.models.clone_model(float_model, clone_function=annotate)
  annotated.set_weights(float_model.get_weights())
  with qkeras.quantize_scope({"DepthwisePerChannelConfig": DepthwisePerChannelConfig,
                              "DepthwisePerChannelQuantizer": DepthwisePerChannelQuantizer,
                              "NoOpQuantizeConfig": configs.NoOpQuantizeConfig}):
    qat = qkeras.quantize_apply(annotated)
  trainable = {l.name: l.trainable for l in float_model.layers}
  for layer in qat.layers:
    inner = getattr(layer, "layer", None)
    if inner is not None and inner.name in trainable:
      layer.trainable = trainable[inner.name]
  calibrate_qat_ranges(qat, float_model, calibration_batches)
  pin_input_range(qat, normalization)
  return qat


def pin_input_range(qat_model: keras.Model, normalization: Normalization) -> None:
  """Sets the input quantizer's range to exactly what the normalization maps 0..255 to.

  The converter derives the uint8 input's scale and zero point from this range, so the
  shipped model takes raw pixels, as phone APIs (Task Library, MediaPipe) feed them.
  """
  lo, hi = normalization.input_range()
  # The first QuantizeLayer quantizes the model input (Keras may suffix its name: _1, _2).
  layer = next(l for l in qat_model.layers if l.name.startswith("quantize_layer"))
  for weight in layer.weights:
    if weight.name.endswith("_min:0"):
      weight.assign(lo)
    elif weight.name.endswith("_max:0"):
      weight.assign(hi)


class Distillation(keras.Model):
  """Trains `student` to reproduce `teacher`'s output probabilities.

  Each step runs the teacher (inference mode) on the same augmented batch the student sees
  and uses its probabilities as the target of the compiled loss (cross-entropy with soft
  targets: KL divergence plus a constant). Labels in the data are ignored; sample weights
  still apply. Inference (`call`, `predict`) is the student's.
  """

  def __init__(self, student: keras.Model, teacher: keras.Model):
    super().__init__(name=f"{student.name}_distillation")
    self.student = student
    self.teacher = teacher
    self.teacher.trainable = False

  def call(self, inputs, training=None):
    return self.student(inputs, training=training)

  def train_step(self, data):
    x, _, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    target = tf.stop_gradient(self.teacher(x, training=False))
    with tf.GradientTape() as tape:
      probs = self.student(x, training=True)
      loss = self.compute_loss(x, target, probs, sample_weight)
    self.optimizer.minimize(loss, self.student.trainable_variables, tape=tape)
    return {m.name: m.result() for m in self.metrics}


def run_qat(qat_model: keras.Model, phase: PhaseConfig, float_model: keras.Model,
            ctx: Context) -> PhaseResult:
  """A short, low learning rate quantization-aware training run from the fine-tuned weights.

  Args:
    qat_model: from `quantize_model` (trained in place).
    phase: epochs and learning rate.
    float_model: the fine-tuned float classifier, whose probabilities on the same augmented
      batch the QAT model learns (self-distillation: int8 learns to agree with float).
    ctx: what the phases share.

  Returns:
    The phase result.
  """
  bundle = ctx.bundle
  ds, steps = inputs.training_dataset(bundle, ctx.normalization, ctx.batch_size, ctx.seed + 2,
                                      ctx.augment, ctx.class_balance)
  val = bundle.splits["val"]
  model = Distillation(qat_model, float_model)
  # The schedule's end is kept: the aim is agreement with the float model, which validation
  # balanced accuracy (a few images of the rare classes) cannot choose an epoch for.
  result = fit_phase("qat", model, phase, ctx, keras.losses.CategoricalCrossentropy(),
                     ds.repeat(), steps,
                     inputs.eval_dataset(val, ctx.normalization, ctx.batch_size), val.labels,
                     mode="distilled from the float model", keep="last")
  pin_input_range(qat_model, ctx.normalization)
  return result
