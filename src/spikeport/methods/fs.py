"""FS conversion (Stöckl & Maass 2021): every activation becomes FS neurons with a K-step temporal code.

- ReLU: the binary code (``T = h = d = scale * 2^-t``), ``scale`` per layer or channel from calibration
  (the maximum or a percentile of the activation's input); the SNN then computes the ANN with every ReLU
  quantised to K bits, exactly.
- SiLU, sigmoid, tanh, GELU, hardswish, LeakyReLU(0.01): fitted codes, the shipped ones
  (``spikeport.fs_codes``; a note says how many calibration inputs fall outside their range) or, with
  ``fit="layer"``, one fitted to each layer's own calibration inputs.
- Analog ops (normalisations, softmax, products of two signals) act on decoded values, counted apart; where
  their values enter synapses, signed FS neurons code them (the binary code of the magnitude, scaled by its
  calibrated maximum or percentile, each spike carrying the sign).
- Input: injected as an analog current (default), or coded by an FS input layer (``input_coding="fs"``:
  the binary code of the input's calibrated range; inputs must then be non-negative).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Annotated, ClassVar, Literal

import torch
from torch import Tensor

from spikeport.assembly.rate import positive_thresholds
from spikeport.assembly.temporal import assemble_fs
from spikeport.encoding import Encoding
from spikeport.errors import ConversionError, OptionError
from spikeport.fs_codes import FITTED_ACTIVATIONS, FSActivation, activation_name, fitted_codes
from spikeport.fs_fit import fit_code
from spikeport.graph.observers import MaxStatistic
from spikeport.graph.prepare import PreparedModel
from spikeport.layers import capped
from spikeport.methods.base import Batches, Method, each_batch
from spikeport.methods.statistics import data_based_thresholds, observe_activations
from spikeport.network import SpikingNetwork
from spikeport.neurons.fs import MAX_BINARY_STEPS, FSCode, FSNeuron
from spikeport.options import Percentile, Range

# Coded by the binary code of a calibrated scale: ReLU, and the signed sites after analog ops.
BINARY = ("relu", "signed")


class AbsMaxStatistic(MaxStatistic):
    """The largest magnitude: the range a homogeneous code with negative values must cover."""

    def update(self, x: Tensor) -> None:
        super().update(x.abs())


class InputSample(MaxStatistic):
    """The range of an activation's inputs and a uniform random sample of them (what its code must fit).

    Every value gets a random key and the ``keep`` smallest keys stay: a uniform sample of all values seen,
    whatever batches they came in.
    """

    def __init__(self, keep: int = 1 << 16):
        super().__init__()
        self.keep = keep
        self.low = math.inf
        self.sample = torch.empty(0, dtype=torch.float64)
        self.keys = torch.empty(0)
        self.generator = torch.Generator().manual_seed(0)

    def update(self, x: Tensor) -> None:
        super().update(x)
        flat = x.detach().flatten().double().cpu()
        self.low = min(self.low, float(flat.min()))
        values = torch.cat([self.sample, flat])
        keys = torch.cat([self.keys, torch.rand(flat.numel(), generator=self.generator)])
        if values.numel() > self.keep:
            keys, order = torch.topk(keys, self.keep, largest=False)
            values = values[order]
        self.sample, self.keys = values, keys

    @property
    def high(self) -> float:
        return float(self.max.max())


@dataclass
class FS(Method):
    name: ClassVar[str] = "fs"
    coding: ClassVar[str] = "temporal"
    # K, the code length a plain ``snn(x)`` runs (evaluate takes any K the codes have)
    steps: Annotated[int, Range(1, MAX_BINARY_STEPS)] = 8
    percentile: Percentile | None = None  # None: code ReLU inputs up to their maximum
    rounding: Literal["nearest", "floor"] = "nearest"  # binary codes: half a unit start, or none
    input_coding: Literal["analog", "fs"] = "analog"
    # Codes of fitted activations: "shipped" (the library's, fitted over a fixed range, every K) or "layer"
    # (fitted for K=steps to each layer's own calibration inputs: their range and their distribution).
    fit: Literal["shipped", "layer"] = "shipped"
    # ReLU scales from the ANN's activation statistics: shared ones serve (other activations' codes, and
    # the input's range, still read the data)
    reads_statistics: ClassVar[bool] = True

    def check(self, prepared: PreparedModel) -> None:
        modules = dict(prepared.graph_module.named_modules())
        for node in prepared.activation_nodes():
            module = modules[node.target]
            name = activation_name(module)
            if name is None:
                raise ConversionError(
                    f"node '{node.name}' is a {module!r} activation, which FS has no code for; FS codes "
                    f"relu and {', '.join(sorted(FITTED_ACTIVATIONS))} (LeakyReLU with slope 0.01 only)"
                )
            if name not in BINARY and self.fit == "shipped" and self.steps not in fitted_codes(name):
                available = ", ".join(map(str, sorted(fitted_codes(name)))) or "none"
                raise ConversionError(
                    f"node '{node.name}' ({name}) has no fitted FS code for K={self.steps} steps (available: "
                    f"{available}); fit one with `spikeport fit-fs {name} --steps {self.steps}` or pick "
                    "another steps="
                )

    def build(self, prepared: PreparedModel, batches: Batches, **network) -> SpikingNetwork:
        if Encoding.parse(network.pop("encoding", Encoding.ANALOG)) is not Encoding.ANALOG:
            raise OptionError(
                "method 'fs' injects the analog input or codes it itself (input_coding='fs'); "
                "Poisson encoding is for rate-coded methods"
            )
        for unused in ("encoding_scale", "seed", "memory_budget"):
            network.pop(unused, None)
        modules = dict(prepared.graph_module.named_modules())
        names = {n.name: activation_name(modules[n.target]) for n in prepared.activation_nodes()}
        layers = {n.name: str(n.target) for n in prepared.activation_nodes()}  # as reports name them

        # ReLU scales: the levels data-based thresholds read (from shared statistics when given)
        scales = data_based_thresholds(prepared, batches, self.channelwise, self.percentile)
        fitted = [n for n, a in names.items() if a not in BINARY and not FITTED_ACTIVATIONS[a].homogeneous]
        samples = (
            observe_activations(
                prepared,
                batches,
                lambda _: InputSample(),
                magnitudes=False,
                stage="sampling activation inputs",
            )
            if fitted
            else {}
        )
        neurons: dict[str, FSNeuron] = {}
        for node_name, activation in names.items():
            if activation in BINARY:  # spike sites: the magnitude's maximum or percentile is their scale
                scale = capped(scales[node_name], modules[layers[node_name]])  # ReLU6: at most 6
                neurons[node_name] = FSNeuron(activation, scale, rounding=self.rounding)
            elif node_name in samples:
                codes = self.codes_for(
                    layers[node_name], FITTED_ACTIVATIONS[activation], samples[node_name], prepared
                )
                neurons[node_name] = FSNeuron(activation, torch.tensor(1.0), codes=codes)
            else:
                neurons[node_name] = FSNeuron(activation, torch.tensor(1.0), codes=fitted_codes(activation))
        homogeneous = [n for n, a in names.items() if a not in BINARY and FITTED_ACTIVATIONS[a].homogeneous]
        if homogeneous:
            ranges = observe_activations(
                prepared,
                batches,
                lambda _: AbsMaxStatistic(self.channelwise),
                stage="measuring activation ranges",
            )
            for node_name in homogeneous:
                neurons[node_name].scale = positive_thresholds(ranges[node_name].max).float()
        input_neuron = self.input_neuron(prepared, batches) if self.input_coding == "fs" else None
        return assemble_fs(prepared, neurons, input_neuron=input_neuron, default_steps=self.steps, **network)

    def codes_for(
        self, layer: str, activation: FSActivation, inputs: InputSample, prepared: PreparedModel
    ) -> dict[int, FSCode]:
        """The shipped codes (with a note when inputs fall outside their range), or one fitted to ``inputs``."""
        if self.fit == "layer":
            own = dataclasses.replace(activation, low=inputs.low, high=inputs.high)
            result = fit_code(own, self.steps, samples=inputs.sample)
            prepared.notes.append(
                f"{activation.name} '{layer}': code fitted to this layer's calibration inputs on "
                f"[{own.low:.3g}, {own.high:.3g}] (K={self.steps}): max error {result.max_error:.3g}, RMS "
                f"{result.rms_error:.3g} (data-weighted), {result.seconds:.1f} s"
            )
            return {self.steps: result.code}
        sample = inputs.sample
        outside = float(((sample < activation.low) | (sample > activation.high)).double().mean())
        if outside > 0:
            prepared.notes.append(
                f"{activation.name} '{layer}': about {100 * outside:.2g}% of its calibration inputs lie outside "
                f"[{activation.low:g}, {activation.high:g}], the range its shipped codes fit (they saturate "
                f"there; this layer's inputs span [{inputs.low:.3g}, {inputs.high:.3g}]); fs[fit=layer] fits a "
                "code to this layer's own inputs"
            )
        return fitted_codes(activation.name)

    def input_neuron(self, prepared: PreparedModel, batches: Batches) -> FSNeuron:
        """The binary code of the input's range, for non-negative inputs."""
        low, high = torch.tensor(float("inf")), MaxStatistic(self.channelwise)
        for x in each_batch(batches, "measuring the input's range"):
            low = torch.minimum(low, x.min().double().cpu())
            high.update(x)
        if low < 0:
            raise ConversionError(
                f"input_coding='fs' codes non-negative inputs only, but the calibration input reaches "
                f"{float(low):.4g}; inject the input as an analog current (input_coding='analog')"
            )
        return FSNeuron("input", positive_thresholds(high.max), rounding=self.rounding)
