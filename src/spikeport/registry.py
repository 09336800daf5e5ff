"""Adding a neuron type: one call enters it in the converter's role table and the saved format's allow-list.

A neuron type is a ``SpikingLayer`` subclass (see ``neurons/integrate_fire.py``) plus this registration; a
method places it by overriding ``RateMethod.neuron``. Nothing else changes: assembly, simulation,
evaluation, counting and saving take any registered spiking layer (``tests/test_neuron_types.py``).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from spikeport.export.description import SPECS, ModuleSpec
from spikeport.graph.ops import MODULE_ROLES, Role
from spikeport.neurons import SpikingLayer


def register_neuron(
    cls: type[SpikingLayer],
    *,
    arguments: tuple[str, ...] = (),
    read: Callable[[nn.Module], dict] | None = None,
    state: tuple[str, ...] = (),
) -> type[SpikingLayer]:
    """Make ``cls`` a neuron spikeport converts to, simulates and saves.

    ``arguments``: constructor arguments stored as the attributes of the same name; ``read``: those stored
    otherwise (a function of the module giving them by name; tensors are saved with the file); ``state``:
    boolean flags set after construction. Loading rebuilds the module from these alone.
    """
    if not (isinstance(cls, type) and issubclass(cls, SpikingLayer)):
        raise TypeError(f"a neuron type is a SpikingLayer subclass, got {cls!r}")
    MODULE_ROLES[cls] = Role.ACTIVATION
    SPECS[cls.__name__] = ModuleSpec(cls, arguments, read, state)
    return cls
