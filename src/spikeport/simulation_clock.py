"""State shared by every stateful module of one SpikingNetwork during a simulation."""

from dataclasses import dataclass


@dataclass
class SimulationClock:
    """How many time steps the current chunk holds, where it starts, for how many samples, and whether
    modules count events."""

    steps: int = 1
    batch: int = 1
    recording: bool = False
    offset: int = 0  # steps simulated before this chunk
    static_input: bool = False  # the part before the first neurons runs once per batch (analog input)
