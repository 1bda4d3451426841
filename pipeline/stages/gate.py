"""Stage `gate`: the int8-vs-float32 parity verdict (pipeline/parity.py), saved in the report
before it is enforced, so a refused build still shows why."""

import dataclasses

from pipeline import layer_error
from pipeline import parity
from pipeline import referral as referral_lib
from pipeline.config import BuildConfig
from pipeline.stages.state import BuildState


def run(config: BuildConfig, state: BuildState) -> BuildState:
  """The verdict on int8, and the same rule applied to the other variants (for QA only)."""
  verdict = parity.verdict(state.models["int8"]["paired"], config.gate)
  gate = {**dataclasses.asdict(verdict), "message": verdict.message(),
          "enforced": config.gate.enabled,
          "other_variants": {name: parity.verdict(m["paired"], config.gate, name,
                                                  m.get("reference", "float32")).passed
                             for name, m in state.models.items()
                             if name != "int8" and "paired" in m}}
  if not verdict.passed and state.layer_error:
    gate["worst_layers"] = layer_error.worst_text(state.layer_error)
    gate["message"] += f" The int8 layers losing the most SQNR: {gate['worst_layers']}."
  state.log(gate["message"])
  if state.referral:
    gate["referral"] = referral_lib.parity_sentence(state.referral)
    state.log(gate["referral"])
  return dataclasses.replace(state, gate=gate)


def enforce(config: BuildConfig, state: BuildState) -> None:
  """Raises PipelineError when the gate failed and is enforced (--gate, the default)."""
  if config.gate.enabled:
    fields = [f.name for f in dataclasses.fields(parity.GateResult)]
    parity.check_gate(parity.GateResult(**{k: state.gate[k] for k in fields}),
                      state.options.assets_dir, state.gate.get("worst_layers", ""))
