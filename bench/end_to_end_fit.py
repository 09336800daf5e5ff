"""A trial, not a shipped method: after ``calibrated``, fit every synapse together to the ANN's logits at T.

``calibrated`` fits layer by layer (Li et al.'s calibration). Could one more pass over the whole network close
the last images at T = 8? This trial builds the network's rate model (each neuron layer replaced by
``weight_fit.rate_model`` with its threshold and bias current, gated max-pools by plain ones), and runs Adam on
all weights against the ANN's logits on the 5,000 calibration images, the loss taken at the simulated SNN's
output (refreshed every ``--refresh`` steps) with the model's gradients (a straight-through estimator, as the
layer fit does). It reports disagreements with the ANN on held-out training images and on the test set, before
and after (``bench/calibration_variants.py``'s data and table). Findings are in docs/benchmarks.md.
Run: python bench/end_to_end_fit.py [--net demo] [--timesteps 8] [--iterations 1000] [--lr 5e-3] [--refresh 50]
"""

from __future__ import annotations

import argparse
import copy
import time

import torch
from calibration_variants import evaluated, images, print_table
from peers import NETS, trained_net
from torch import fx, nn

import spikeport as sp
from spikeport.assembly.rate import broadcastable
from spikeport.methods.weight_fit import Adam, rate_model
from spikeport.neurons.integrate_fire import IFNeuron
from spikeport.neurons.max_pool import SpikingMaxPool


class RateOf(nn.Module):
    """A neuron layer's rate model at T: what its differentiable stand-in computes."""

    def __init__(self, neuron: IFNeuron, timesteps: int):
        super().__init__()
        self.neuron, self.timesteps = neuron, timesteps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = self.neuron
        if n.bias is not None:
            x = x + n.bias
        threshold = broadcastable(n.threshold, x.shape[1:], x.dtype)
        return rate_model(x, threshold, self.timesteps, n.initial_potential)


def rate_network(snn, timesteps: int) -> fx.GraphModule:
    """The SNN's graph with neurons replaced by their rate models; the synapses are the SNN's own modules."""
    model = fx.GraphModule(snn.graph_module, copy.deepcopy(snn.graph_module.graph))
    for node, neuron in snn.neuron_nodes():
        model.add_submodule(node.target, RateOf(neuron, timesteps))
    for name, module in list(model.named_modules()):
        if isinstance(module, SpikingMaxPool):
            model.add_submodule(name, module.pool)
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--net", default="demo", choices=list(NETS))
    parser.add_argument("--timesteps", type=int, default=8)
    parser.add_argument("--iterations", type=int, default=1000)
    parser.add_argument(
        "--lr", type=float, default=5e-3, help="per step, relative to a module's weight scale"
    )
    parser.add_argument("--refresh", type=int, default=50, help="Adam steps between simulations of the SNN")
    args = parser.parse_args()
    steps = args.timesteps
    model = trained_net(args.net)
    calibration, held_out, test = images(args.net)
    splits = {"held-out": held_out, "test": test}
    with torch.no_grad():
        references = {name: model(x).argmax(1) for name, (x, _) in splits.items()}
        target = model(calibration)
    start = time.perf_counter()
    snn = sp.convert(model, calibration, f"calibrated[timesteps={steps}]")
    converted = time.perf_counter() - start

    def snn_logits() -> torch.Tensor:
        with torch.no_grad():
            return torch.cat(
                [
                    snn.simulate(calibration[i : i + 500], steps).readout[-1]
                    for i in range(0, len(calibration), 500)
                ]
            )

    results = {
        f"calibrated[timesteps={steps}]": {**evaluated(snn, splits, references), "convert_seconds": converted}
    }
    stand_in = rate_network(snn, steps)
    groups = [
        {"params": list(m.parameters()), "lr": args.lr * float(m.weight.detach().square().mean().sqrt())}
        for m in stand_in.modules()
        if isinstance(m, (nn.Conv2d, nn.Linear))
    ]
    optimizer = Adam(groups)
    generator = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    logits = snn_logits()  # the SNN's, refreshed every args.refresh steps
    before = float((logits - target).square().mean())
    for step in range(args.iterations):
        if step % args.refresh == 0:
            if step > 0:
                logits = snn_logits()
            with torch.no_grad():
                corrections = logits - stand_in(calibration)
        pick = torch.randint(len(calibration), (128,), generator=generator)
        with torch.enable_grad():
            loss = (stand_in(calibration[pick]) + corrections[pick] - target[pick]).square().mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    after = float((snn_logits() - target).square().mean())
    fitted = converted + time.perf_counter() - start
    print(f"logits' squared error against the ANN on the calibration images: {before:.4f} -> {after:.4f}")
    results[f"then end to end, {args.iterations} steps, lr {args.lr}"] = {
        **evaluated(snn, splits, references),
        "convert_seconds": fitted,
    }
    print_table(results, {name: len(x) for name, (x, _) in splits.items()})


if __name__ == "__main__":
    main()
