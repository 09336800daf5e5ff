"""What a coding is: the one object that knows how values travel in time through a spiking network.

Rate and temporal (FS) coding differ in how many steps an output needs, what the read-out means, which
figures exist and how a run is simulated. Each is a ``Coding``: the network simulates through it, the
evaluator asks it which runs answer which step counts, reports ask it how to label and plot them, and the
saved format stores its settings. Nothing outside ``spikeport.coding`` compares coding names.

A coding has two faces. An instance, with its settings, belongs to a network (``snn.coding``). The class
reads evaluations as data (an ``Evaluation`` names its coding), for tables and plots of saved results.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor

from spikeport.errors import OptionError
from spikeport.options import check_fields

if TYPE_CHECKING:
    from spikeport.network import SpikingNetwork


@dataclass
class Simulation:
    """What one run produced; every per-step tensor covers the whole batch.

    ``readout`` has one row per step at which the output exists: every step of a rate code (``[T, B, ...]``,
    the running mean), the single decoded output of a temporal code (``[1, B, ...]``).
    """

    readout: Tensor
    # Per spiking layer (neurons and max-pools): [steps] events per step, and the synaptic ops they cause.
    spikes: dict[str, Tensor] = field(default_factory=dict)
    sops: dict[str, Tensor] = field(default_factory=dict)
    input_sops: Tensor | None = None  # [steps] synaptic ops of input spikes (Poisson encoding)
    input_macs: Tensor | None = None  # [steps] multiply-accumulates of analog values (input, products)


def recorded(layers: dict, steps: int, result: Simulation) -> None:
    """Hand ``result`` each spiking layer's per-step events and SOPs of a recorded run of ``steps``."""
    for name, layer in layers.items():
        result.spikes[name] = layer.spikes_per_step
        result.sops[name] = layer.sops_per_step if layer.sops_per_step is not None else torch.zeros(steps)


@dataclass(frozen=True)
class Run:
    """One simulation an evaluation makes: ``steps`` long, answering the step counts ``points``."""

    steps: int
    points: tuple[int, ...]


@dataclass
class Coding(ABC):
    """How a network carries values in time (see the module docstring); subclasses are dataclasses."""

    name: ClassVar[str]
    steps_symbol: ClassVar[str]  # what tables call a number of steps: T, or K for a code length
    # Whether every step of a run has a read-out, so that evaluations keep per-step curves.
    step_curves: ClassVar[bool]
    # Why NIR cannot express networks of this coding (None: it can).
    nir_refusal: ClassVar[str | None] = None
    plot_style: ClassVar[str] = "-"

    def __post_init__(self) -> None:
        check_fields(self, f"{self.name} coding")

    def settings(self) -> dict[str, Any]:
        """What the saved format stores to rebuild this coding (``coding_from_settings``)."""
        return {k: getattr(v, "value", v) for k, v in asdict(self).items()}

    # --- the network side ----------------------------------------------------------------------------

    @property
    @abstractmethod
    def default_steps(self) -> int:
        """The steps ``snn(x)`` runs when none are given."""

    @abstractmethod
    def simulate(
        self, snn: SpikingNetwork, x: Tensor, steps: int, *, record: bool, chunk: int | None
    ) -> Simulation:
        """Run ``x`` (checked, in the network's dtype) for ``steps``; ``record`` also counts events."""

    @property
    def constant_input(self) -> bool:
        """Whether the input is the same at every step, so the part before the first neurons can run once."""
        return False

    def supported_steps(self, snn: SpikingNetwork) -> list[int] | None:
        """The step counts the network can run (None: any)."""
        return None

    def check_steps(self, snn: SpikingNetwork, steps: list[int]) -> None:
        """Refuse, with a one-line error, step counts the network cannot run."""
        supported = self.supported_steps(snn)
        missing = [k for k in steps if supported is not None and k not in supported]
        if missing:
            raise OptionError(
                f"this network cannot run {self.steps_symbol} = {', '.join(map(str, missing))}; it runs "
                f"{self.steps_symbol} = {', '.join(map(str, supported))}"
            )

    def evaluation_steps(self, snn: SpikingNetwork, timesteps: list[int], codes: list[int]) -> list[int]:
        """What to evaluate when a user asked for ``timesteps`` (rate) and ``codes`` (code lengths)."""
        return timesteps

    @abstractmethod
    def runs(self, steps: list[int]) -> list[Run]:
        """The simulations that answer every step count in ``steps`` (sorted, distinct)."""

    @abstractmethod
    def readout_row(self, run: Run, point: int) -> int:
        """The row of ``run``'s read-out that answers ``point``."""

    @abstractmethod
    def counted_steps(self, run: Run, point: int) -> int:
        """How many of ``run``'s first steps the spikes and SOPs of ``point`` sum."""

    @abstractmethod
    def latency(self, steps: int) -> int:
        """Time steps from the input's arrival until the output of a ``steps`` run exists."""

    @abstractmethod
    def analog_runs(self, steps: int) -> int:
        """How often each analog op (not in a static prefix) runs for one image in a run of ``steps``."""

    @abstractmethod
    def throughput(self, steps: int) -> float:
        """Images per time step, layers working as a pipeline."""

    @abstractmethod
    def analog_macs_per_sample(self, snn: SpikingNetwork) -> Tensor:
        """Synaptic ops fed by analog values (input current, products), counted as MACs, per sample."""

    # --- the evaluation side: an Evaluation's figures as data -----------------------------------------

    @classmethod
    def steps_header(cls) -> str:
        return cls.steps_symbol

    @classmethod
    def steps_cell(cls, ev, t: int) -> str:
        return f"{t}"

    @classmethod
    def table_notes(cls, ev) -> str:
        """Lines under an evaluation's table that explain this coding's figures ('' for none)."""
        return ""

    @classmethod
    @abstractmethod
    def series(cls, ev, metric: str, cost: str) -> tuple[list[int], list[float], list[float]]:
        """(latency in steps, ``metric``, ``cost`` per image) to plot."""

    @classmethod
    @abstractmethod
    def latency_reaching(cls, ev, target: float, metric: str) -> int | None:
        """First step after which ``metric`` stays at ``target`` or above (None: never)."""

    @classmethod
    @abstractmethod
    def cost_at(cls, ev, steps: int) -> tuple[float, float | None]:
        """SOPs and energy per image once the output exists after ``steps`` steps."""
