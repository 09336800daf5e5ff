"""The multi-step runner: chunks of time through the graph, state carried between chunks."""

from __future__ import annotations

import torch
from torch import Tensor

from spikeport.encoding import Encoding
from spikeport.network import Simulation, SpikingNetwork


def run(snn: SpikingNetwork, x: Tensor, timesteps: int, *, record: bool, chunk: int) -> Simulation:
    """Simulate ``timesteps`` steps in chunks of ``chunk`` steps; see ``SpikingNetwork.simulate``."""
    neurons = snn.neurons()
    for neuron in neurons.values():
        neuron.reset_state()
    generator = (
        torch.Generator(device=x.device).manual_seed(snn.seed) if snn.encoding is Encoding.POISSON else None
    )
    batch = x.shape[0]
    total: Tensor | None = None
    readouts: list[Tensor] = []
    input_events: list[Tensor] = []
    snn.clock.recording = record
    snn.clock.batch = batch
    try:
        done = 0
        while done < timesteps:
            steps = min(chunk, timesteps - done)
            snn.clock.steps = steps
            frames = x if snn.static_input else snn.encode(x, steps, generator)
            if record and snn.encoding is Encoding.POISSON and not snn.static_input:
                counts = frames.reshape(steps, batch, -1).ne(0).sum(dim=1).to(torch.float64)
                input_events.append(counts @ snn.input_fanout)
            out = snn.graph_module(frames)
            out = out.reshape(steps, batch, *out.shape[1:])
            running = out.cumsum(dim=0, dtype=torch.float64)
            if total is not None:
                running += total
            total = running[-1].clone()
            elapsed = torch.arange(done + 1, done + steps + 1, dtype=torch.float64, device=x.device)
            readouts.append((running / elapsed.reshape(-1, *([1] * (running.dim() - 1)))).to(out.dtype))
            done += steps
    finally:
        snn.clock.recording = False
    result = Simulation(readout=torch.cat(readouts))
    if record:
        for name, neuron in neurons.items():
            result.spikes[name] = torch.cat(neuron.spikes_per_step)
            result.sops[name] = (
                torch.cat(neuron.sops_per_step) if neuron.sops_per_step else torch.zeros(timesteps)
            )
        if snn.encoding is Encoding.POISSON:
            result.input_sops = torch.cat(input_events)
        else:
            dense = snn.input_fanout.sum() * batch
            result.input_macs = dense.expand(timesteps).clone()
    for neuron in neurons.values():
        neuron.reset_state()
    return result
