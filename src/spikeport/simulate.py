"""The multi-step runner: chunks of time through the graph, state carried between chunks."""

from __future__ import annotations

import torch
from torch import Tensor

from spikeport.encoding import Encoding
from spikeport.network import Simulation, SpikingNetwork


def run(snn: SpikingNetwork, x: Tensor, timesteps: int, *, record: bool, chunk: int) -> Simulation:
    """Simulate ``timesteps`` steps in chunks of ``chunk`` steps; see ``SpikingNetwork.simulate``."""
    layers = snn.spiking_layers()
    for layer in layers.values():
        layer.reset_state(record_steps=timesteps if record else 0)
    generator = (
        torch.Generator(device=x.device).manual_seed(snn.seed) if snn.encoding is Encoding.POISSON else None
    )
    batch = x.shape[0]
    total: Tensor | None = None  # the read-out summed over the steps so far, float64
    readout: Tensor | None = None  # [timesteps, B, ...]: the running mean after every step
    input_events = torch.zeros(timesteps, dtype=torch.float64, device=x.device) if record else None
    snn.clock.recording = record
    snn.clock.batch = batch
    snn.clock.static_input = snn.static_input
    split = snn.static_split() if snn.static_input else None
    try:
        constants = split[0](snn.simulation_layout(x)) if split is not None else ()  # once per batch
        done = 0
        while done < timesteps:
            steps = min(chunk, timesteps - done)
            snn.clock.steps, snn.clock.offset = steps, done
            frames = x if snn.static_input else snn.encode(x, steps, generator)
            if record and snn.encoding is Encoding.POISSON and not snn.static_input:
                counts = frames.reshape(steps, batch, -1).ne(0).sum(dim=1).to(torch.float64)
                input_events[done : done + steps] = counts @ snn.input_fanout
            out = (
                split[1](*constants) if split is not None else snn.graph_module(snn.simulation_layout(frames))
            )
            out = out.reshape(steps, batch, *out.shape[1:])
            running = out.cumsum(dim=0, dtype=torch.float64)
            if total is None:
                total = torch.zeros_like(running[0])
                readout = out.new_empty(timesteps, *out.shape[1:])
            running += total
            total.copy_(running[-1])
            elapsed = torch.arange(done + 1, done + steps + 1, dtype=torch.float64, device=x.device)
            readout[done : done + steps] = running / elapsed.reshape(-1, *([1] * (running.dim() - 1)))
            done += steps
    finally:
        snn.clock.recording = False
    result = Simulation(readout=readout)
    if record:
        for name, layer in layers.items():
            result.spikes[name] = layer.spikes_per_step
            result.sops[name] = (
                layer.sops_per_step if layer.sops_per_step is not None else torch.zeros(timesteps)
            )
        if snn.encoding is Encoding.POISSON:
            result.input_sops = input_events
        else:
            dense = snn.analog_macs_per_sample() * batch
            result.input_macs = dense.expand(timesteps).clone()
    for layer in layers.values():
        layer.reset_state()
    return result
