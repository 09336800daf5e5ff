"""Calibrated conversion: the best post-training rate code at a target number of steps T.

Five ingredients (after Li et al., ICML 2021, "A free lunch from ANN: towards efficient, accurate spiking
neural networks calibration", Bu et al. 2024, "Inference-scale complexity in ANN-SNN conversion", and the
channel-wise recipes of current converters):

- channel-wise thresholds, starting from a high percentile of the ANN's activations (robust to outliers);
- the half-threshold start (rates round instead of flooring);
- threshold search, layer by layer in depth order: the SNN fitted so far is simulated for the target T on
  calibration data, and each channel of the next layer takes the candidate threshold (a multiple of its
  percentile) whose output rates come closest, in squared error, to the ANN's activations. At small T a lower
  threshold than any percentile wins: fewer levels are wasted on rare large values;
- bias correction in the same pass: each channel gets a constant input current equal to the mean difference
  between the ANN's activation (clipped at the threshold: no rate can exceed it) and the SNN's output rate;
- weight calibration (``weights``, Li et al.'s advanced pipeline; ``methods.weight_fit``): the same pass
  records what each layer's synapses receive from the converted layers upstream (time averages and spike
  trains), the synapses are fitted so that the neurons' rate at T matches the ANN's activations (the loss at
  the neurons simulated on the recorded spike trains, ``simulated_fit``, the gradients from a model of their
  rate), and a second pass fits threshold and bias again on the new weights (its bias adds to the first's:
  the currents it sees carry it). Last, the synapses into the read-out are fitted to the ANN's output. Soft
  reset only for hidden layers (the rate model is soft reset's); the read-out always.

Correcting a layer changes what deeper layers receive, so layers are fitted in order, each on the SNN with
every shallower layer already fitted. Max-pools move before the neurons (``pool_before_neurons``, exact in
the ANN) so that they pool input currents, which needs no settling time. The fit is for ``timesteps``; other
T still work, but best at it (past it, the fitted weights cost a little: name the T you will run).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from functools import partial
from math import prod
from typing import ClassVar

import torch
from torch import Tensor, fx, nn

from spikeport.assembly.rate import broadcastable
from spikeport.distributed import all_sum
from spikeport.errors import ConversionError
from spikeport.graph.observers import channels_first
from spikeport.graph.ops import Role, describe
from spikeport.graph.prepare import PreparedModel
from spikeport.graph.subgraph import feeding_subgraph
from spikeport.methods.base import Batches, RateMethod, each_batch
from spikeport.methods.rmp import activation_depths
from spikeport.methods.statistics import data_based_thresholds, observed_ann, reduce_statistics
from spikeport.methods.weight_fit import (
    SpikeTrains,
    SpikingInputs,
    fit_parameters,
    joined_batches,
    packed_length,
    rate_model,
    simulated_rates,
    trainable_groups,
)
from spikeport.network import SpikingNetwork
from spikeport.neurons.dynamics import Reset, if_scan
from spikeport.options import Count, Fraction, Percentile
from spikeport.qcfs import QCFS


@dataclass
class Fit:
    """What the layer-by-layer fit works on: the ANN as given (its activations are the targets), the graph
    whose weights are fitted, the calibration input, and the thresholds and bias currents fitted so far."""

    reference: PreparedModel
    prepared: PreparedModel
    inputs: Batches
    thresholds: dict[str, Tensor]
    biases: dict[str, Tensor]


@dataclass
class Calibrated(RateMethod):
    name: ClassVar[str] = "calibrated"
    channelwise: bool = True
    initial_potential: Fraction = 0.5
    pool_before_neurons: bool = True
    percentile: Percentile | None = 99.9  # None: the maximum
    timesteps: Count = 8  # the T the fit aims at
    correction: bool = True  # bias currents that cancel the mean error at T
    search: bool = True  # thresholds chosen on the SNN's own error at T (else the percentile's)
    calibration_limit: Count = 2048  # calibration samples simulated per fitting pass (one per depth)
    weights: bool = True  # weight calibration: each layer's synapses fitted to its spiking inputs at T
    simulated_fit: bool = True  # the weight fit's loss at the simulated neurons' rates, not the rate model's

    def check(self, prepared: PreparedModel) -> None:
        """The layer fit models ReLU neurons: analog ops and smooth activations are for the other methods."""
        super().check(prepared)
        modules = dict(prepared.graph_module.named_modules())
        for node in [*prepared.nodes_of(Role.ANALOG), *prepared.activation_nodes()]:
            module = modules[node.target]
            if isinstance(module, nn.ReLU | QCFS):
                continue
            raise ConversionError(
                f"node '{node.name}' ({describe(node, modules)}) is not a ReLU; method 'calibrated' fits "
                "ReLU layers only (its rate model), so convert networks with analog ops or smooth activations "
                "with ecc, percentile or max (rate) or fs (temporal)"
            )

    def thresholds(self, prepared: PreparedModel, batches: Batches) -> dict[str, Tensor]:
        return data_based_thresholds(prepared, batches, self.channelwise, self.percentile)

    def build(self, prepared: PreparedModel, batches: Batches, **network) -> SpikingNetwork:
        start = time.perf_counter()
        thresholds = self.thresholds(prepared, batches)
        biases: dict[str, Tensor] = {}
        if self.correction or self.search or self.weights:
            thresholds, biases = self.fit_layers(prepared, batches, thresholds)
        snn = self.assembled(prepared, thresholds, **network)
        set_biases(snn, biases)
        done = [
            word
            for word, on in (
                ("thresholds searched", self.search),
                ("bias-corrected", self.correction),
                ("weights fitted", self.weights),
            )
            if on
        ]
        prepared.notes.append(
            f"calibrated for T={self.timesteps} in {time.perf_counter() - start:.1f} s "
            f"({', '.join(done) or 'percentile thresholds only'}, {len(thresholds)} layers)"
        )
        return snn

    def fit_layers(
        self, prepared: PreparedModel, batches: Batches, thresholds: dict[str, Tensor]
    ) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Thresholds and bias currents (and weights) fitted in depth order, each layer on the SNN fitted so far."""
        # The targets are the activations of the ANN as given, also after weights have changed.
        reference = PreparedModel(copy.deepcopy(prepared.graph_module), prepared.input_shape)
        fit = Fit(reference, prepared, limited(batches, self.calibration_limit), dict(thresholds), {})
        depths = activation_depths(prepared)
        fit_hidden_weights = self.weights and self.reset is Reset.SOFT  # the rate model is soft reset's
        levels = sorted(set(depths.values()))
        for depth in levels:
            current = {name for name, d in depths.items() if d == depth}
            stage = f"fitting depth {depth + 1}/{len(levels)}"
            recorded = self.fit_depth(fit, current, stage, record=fit_hidden_weights)
            if recorded is not None:
                self.fit_layer_weights(fit, *recorded)
                self.fit_depth(fit, current, f"{stage} again, on the fitted weights")
        if self.weights:
            self.fit_readout_weights(fit)
        return fit.thresholds, fit.biases

    def fitted_snn(self, fit: Fit) -> SpikingNetwork:
        snn = self.assembled(fit.prepared, fit.thresholds)
        set_biases(snn, fit.biases)
        return snn

    def fit_depth(
        self, fit: Fit, current: set[str], stage: str, record: bool = False
    ) -> tuple[dict[str, Tensor], dict[str, Tensor], dict[str, SpikeTrains]] | None:
        """One simulated pass that fits the ``current`` layers' thresholds and biases (updated in place),
        reported as ``stage``.

        ``record``: also returns, for weight calibration, the ANN's activations of those layers, the time
        averages of the spiking values their synapses read, and (``simulated_fit``) their spike trains.
        """
        scales = SEARCH_SCALES if self.search else torch.ones(1, dtype=torch.float64)
        shapes = {node.name: node.meta["sample_shape"] for node in fit.prepared.activation_nodes()}
        ann, layer_fits = observed_ann(
            fit.reference,
            lambda name: LayerFit(
                fit.thresholds[name],
                shapes[name],
                scales,
                self.initial_potential,
                self.reset,
                levels=self.levels,
                keep_targets=record,
            ),
            current,
            truncate=True,  # deeper layers are fitted later: the ANN stops at this depth
        )
        snn = self.fitted_snn(fit)
        reads = spiking_reads(fit.prepared, current) if record else set()
        spiking_inputs = SpikingInputs(
            snn, reads, trains=self.simulated_fit and self.trains_fit_in_memory(fit, reads)
        )
        observers = {name: layer_fits[name].observe for name in current}
        seen = 0
        with torch.no_grad(), snn.observing(observers):  # the SNN ends at this depth too
            for x in each_batch(fit.inputs, stage):
                ann(x)
                spiking_inputs.start(x)
                snn.simulate(x, self.timesteps, chunk=self.timesteps)
                seen += x.shape[0]
        recorded = spiking_inputs.close()
        reduce_statistics(fit.prepared, layer_fits, seen)
        for name, layer_fit in layer_fits.items():
            fit.thresholds[name], bias = layer_fit.best()
            if self.correction:
                # the currents carried the bias of an earlier pass: this one corrects what remains
                fit.biases[name] = bias + fit.biases.get(name, 0)
        if not record:
            return None
        targets = {name: joined_batches(f.targets) for name, f in layer_fits.items()}
        return targets, recorded, spiking_inputs.spike_trains()

    def trains_fit_in_memory(self, fit: Fit, reads: set[str]) -> bool:
        """Whether the spike trains that the layers of one depth read fit in memory (a bit per spike slot,
        a neuron's steps padded to whole bytes)."""
        sizes = [prod(n.meta["sample_shape"]) for n in fit.prepared.activation_nodes() if n.name in reads]
        # bytes per neuron: steps packed eight to a byte, or a graded spike's level per byte
        per_neuron = packed_length(self.timesteps) if self.levels == 1 else self.timesteps
        needed = sum(sizes) * per_neuron * self.calibration_limit
        if needed <= SPIKE_TRAINS_BUDGET:
            return True
        fit.prepared.notes.append(
            f"weights fitted on the rate model alone: the spike trains would take {needed / 2**30:.1f} GiB "
            f"(more than {SPIKE_TRAINS_BUDGET / 2**30:.0f}; a smaller calibration_limit fits)"
        )
        return False

    def fit_layer_weights(
        self,
        fit: Fit,
        targets: dict[str, Tensor],
        recorded: dict[str, Tensor],
        trains: dict[str, SpikeTrains],
    ) -> None:
        """Each layer's synapses fitted so that the rate model's output at T matches the ANN's activations.

        The model's current is the synapses' output on the time-averaged inputs plus the bias current that
        this depth's first pass set (it stays in the network): the SNN's mean current, exactly (the ops
        between neuron layers are affine, and a gated max-pool's outputs sum to the max-pool of its inputs'
        sums). With ``simulated_fit`` the loss is taken at the rates of the neurons simulated on the recorded
        spike trains (``weight_fit.simulated_rates``: exact at T), the model giving only the gradients.
        """
        gm = fit.prepared.graph_module
        frontier = {node.name for node in fit.prepared.activation_nodes()}
        shapes = {node.name: node.meta["sample_shape"] for node in fit.prepared.activation_nodes()}
        for name in sorted(targets):
            layer, reads = feeding_subgraph(gm, name, frontier)
            target = targets[name]
            threshold = broadcastable(fit.thresholds[name], shapes[name], target.dtype).to(target.device)

            def rate(current: Tensor, threshold: Tensor = threshold) -> Tensor:
                return rate_model(current, threshold, self.timesteps * self.levels, self.initial_potential)

            bias = fit.biases.get(name, torch.zeros(())).to(target)
            exact = None
            if trains:  # samples -> the rates of the neurons simulated on the recorded spike trains
                exact = partial(
                    simulated_rates,
                    WithBias(layer, bias),
                    [trains[r] for r in reads],
                    timesteps=self.timesteps,
                    threshold=threshold,
                    initial_potential=self.initial_potential,
                    levels=self.levels,
                )
            inputs = [recorded[r] for r in reads]
            self.note_fit(fit.prepared, name, layer, inputs, target, rate, bias, exact)

    def fit_readout_weights(self, fit: Fit) -> None:
        """The synapses into the output fitted so that the read-out at T matches the ANN's output (exactly
        linear in the mean rates when no max-pool lies between)."""
        gm = fit.prepared.graph_module
        output = next(n for n in gm.graph.nodes if n.op == "output")
        layer, reads = feeding_subgraph(gm, output.name, {n.name for n in fit.prepared.activation_nodes()})
        snn = self.fitted_snn(fit)
        spiking_inputs = SpikingInputs(snn, set(reads))
        targets = []
        with torch.no_grad():
            for x in each_batch(fit.inputs, "simulating for the read-out's fit"):
                targets.append(fit.reference.graph_module(x))
                spiking_inputs.start(x)
                snn.simulate(x, self.timesteps, chunk=self.timesteps)
        recorded = spiking_inputs.close()
        inputs = [recorded[r] for r in reads]
        self.note_fit(fit.prepared, "the read-out", layer, inputs, joined_batches(targets))

    @staticmethod
    def note_fit(
        prepared, name, layer, inputs, target, output=lambda current: current, bias=None, exact=None
    ) -> None:
        """Fit ``layer``'s synapses (``weight_fit.fit_parameters``), with a constant ``bias`` current added to
        their output if given, and say in the notes how far it got."""
        groups = trainable_groups(layer, prepared.graph_module)
        if not groups:
            return
        if bias is not None:
            layer = WithBias(layer, bias)
        stage = f"fitting the weights into {name}"
        before, after = fit_parameters(layer, groups, inputs, target, output, exact=exact, stage=stage)
        prepared.notes.append(f"weights into {name} fitted: squared error {before:.3g} -> {after:.3g}")


class WithBias(torch.nn.Module):
    """``layer`` with a constant current added to its output (which is not fitted)."""

    def __init__(self, layer: fx.GraphModule, bias: Tensor):
        super().__init__()
        self.layer = layer
        self.register_buffer("bias", bias)

    def forward(self, *inputs: Tensor) -> Tensor:
        return self.layer(*inputs) + self.bias


def spiking_reads(prepared: PreparedModel, names: set[str]) -> set[str]:
    """The activations (and the input) whose values the synapses into the layers ``names`` read."""
    frontier = {node.name for node in prepared.activation_nodes()}
    return set().union(*(feeding_subgraph(prepared.graph_module, n, frontier)[1] for n in names))


def set_biases(snn: SpikingNetwork, biases: dict[str, Tensor]) -> None:
    for node, neuron in snn.neuron_nodes():
        if node.name in biases:
            neuron.bias = biases[node.name].to(neuron.threshold)  # its dtype and device


# Memory for the spike trains one depth's weight fit simulates on (simulated_fit), in bytes.
SPIKE_TRAINS_BUDGET = 4 * 2**30

# Candidate thresholds, as multiples of the percentile threshold: 2^(k/8) from 1/8 to 1.41.
SEARCH_SCALES = torch.exp2(torch.arange(-24, 5, dtype=torch.float64) / 8)


class LayerFit:
    """Chooses one layer's per-channel threshold on the SNN's own output at T, and its bias current.

    Fed a batch's ANN pre-activation (``update``), then the same batch's input currents to the spiking layer
    (``observe``, ``[T, B, ...]``: the SNN upstream is the fitted one). For every candidate threshold it runs the
    layer alone and sums per channel the squared error of the output rate against the ANN's activation, and the
    error against the activation clipped at that threshold (what a constant current can correct: no rate
    exceeds the threshold). Sums merge across processes.
    """

    def __init__(
        self,
        threshold: Tensor,
        sample_shape: tuple[int, ...],
        scales: Tensor,
        initial_potential: float,
        reset: Reset | str,
        levels: int = 1,
        keep_targets: bool = False,
    ):
        self.targets: list[Tensor] | None = [] if keep_targets else None
        self.threshold_shape = threshold.shape  # as given: what ``best`` returns
        self.base = broadcastable(threshold, sample_shape, torch.float64)  # [C, 1, ...] or a scalar
        self.channelwise = threshold.numel() > 1
        self.scales = scales
        self.initial_potential = initial_potential
        self.reset = Reset.parse(reset)
        self.levels = levels
        size = (len(scales), threshold.numel())
        self.squared = torch.zeros(size, dtype=torch.float64)
        self.offset = torch.zeros(size, dtype=torch.float64)
        self.count = 0
        self.target: Tensor | None = None

    def update(self, x: Tensor) -> None:
        self.target = x.detach().clamp_min(0)
        if self.targets is not None:
            self.targets.append(self.target)

    def observe(self, currents: Tensor) -> None:
        target = self.target
        for i, scale in enumerate(self.scales.tolist()):
            # the layer runs where the currents are; the sums stay on the CPU
            threshold = (self.base * scale).to(currents)
            v = (self.initial_potential * threshold / self.levels).expand(currents.shape[1:]).clone()
            _, out = if_scan(v, currents, threshold, self.reset, update_state=True, levels=self.levels)
            rate = out.mean(dim=0)
            self.squared[i] += self.per_channel((target - rate).square_()).cpu()
            self.offset[i] += self.per_channel(torch.minimum(target, threshold) - rate).cpu()
        self.count += target.numel() // self.squared.shape[1]

    def per_channel(self, x: Tensor) -> Tensor:
        return channels_first(x, self.channelwise).sum(dim=1, dtype=torch.float64)

    def all_reduce(self, channels: int) -> None:
        self.squared, self.offset = all_sum(self.squared), all_sum(self.offset)
        self.count = int(all_sum(torch.tensor(self.count)))

    def best(self) -> tuple[Tensor, Tensor]:
        """(threshold, bias current) of the candidate with the least squared error, per channel."""
        choice = self.squared.argmin(dim=0)
        channels = torch.arange(self.squared.shape[1])
        threshold = self.base.reshape(-1) * self.scales[choice]
        bias = self.offset[choice, channels] / max(1, self.count)
        return threshold.reshape(self.threshold_shape), bias.float().reshape(self.base.shape)


def limited(batches: Batches, limit: int) -> Batches:
    """The first ``limit`` samples of ``batches``, re-iterable."""

    def first():
        seen = 0
        for x in batches():
            if seen >= limit:
                return
            yield x[: limit - seen]
            seen += x.shape[0]

    known = getattr(batches, "samples", None)
    first.samples = limit if known is None else min(known, limit)  # progress totals
    return first
