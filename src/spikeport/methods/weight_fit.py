"""Weight calibration: fit a layer's synaptic weights to what its spiking inputs really carry at T steps.

Once the layers upstream are converted, their rates differ from the ANN's activations (quantised to T levels,
clipped, delayed). Li et al. (ICML 2021, the "advanced" pipeline of SNN calibration) correct the next layer's
weights for it: minimise, on calibration data, the squared error between the layer's output at T and the
ANN's activation, with the layer fed the SNN's own time-averaged inputs. Integrate-and-fire neurons with soft
reset, start potential ``v0`` (a fraction of the threshold) and a constant current ``m`` fire at the rate
``threshold / T * clamp(floor(T m / threshold + v0), 0, T)``; with the mean current as ``m`` this is the model
the fit differentiates, the floor passing gradients straight through. The model is exact only while the
membrane stays in [0, threshold) at the end; currents that vary in time (early negative, late positive,
bursts) make the neurons fire otherwise. So the loss can be taken at the neurons' true rate instead
(``simulated_rates``: the neurons run on the recorded spike trains of the layers upstream, exact at T), the
model still giving the gradients. The readout has no neurons: its value at T is the mean current itself, so
its fit is exact.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, fx, nn

from spikeport import progress
from spikeport.distributed import active, all_gather_objects
from spikeport.graph.canonical import module_call_counts
from spikeport.neurons.dynamics import Reset, if_scan
from spikeport.qcfs import floor_straight_through

ITERATIONS = 400  # Adam steps per layer, on random mini-batches of the recorded calibration samples
BATCH_SIZE = 128
# Per step, about this fraction of a module's weight scale (root mean square): the ANN's weights are a good
# start, the fit only corrects them.
RELATIVE_LEARNING_RATE = 1e-3
# With an exact output: Adam steps between evaluations of it on every sample, the difference to the model held
# in between (0: on every mini-batch). Measured on held-out images (docs/benchmarks.md): refreshing every 100
# steps fits as well as every mini-batch, and the simulations cost a quarter.
EXACT_REFRESH = 100


def rate_model(mean_current: Tensor, threshold: Tensor, timesteps: int, initial_potential: float) -> Tensor:
    """The rate (in the ANN's units) of soft-reset IF neurons driven by ``mean_current`` for ``timesteps`` steps:
    QCFS's clip-floor-shift (``spikeport.qcfs``) with T levels and the start potential as its shift. Graded
    spikes of L levels over T steps: ``timesteps`` = T * L (they resolve what T * L binary steps do)."""
    level = floor_straight_through(mean_current * (timesteps / threshold) + initial_potential)
    return level.clamp(0, timesteps) * (threshold / timesteps)


def trainable_groups(layer: fx.GraphModule, graph: fx.GraphModule) -> list[dict]:
    """Adam parameter groups, one per module that ``layer`` calls, each with a learning rate in proportion to
    the size of the module's weights (so the fit moves every layer by the same relative amount, whatever
    its scale). Modules that ``graph`` calls elsewhere too are left alone: fitting them for one site would
    change another."""
    calls = module_call_counts(graph)
    groups = []
    for node in layer.graph.nodes:
        if node.op != "call_module" or calls.get(node.target, 0) != 1:
            continue
        parameters = list(layer.get_submodule(node.target).parameters())
        if not parameters:
            continue
        largest = max(parameters, key=lambda p: p.numel()).detach()
        scale = float(largest.square().mean().sqrt())
        if scale > 0:
            groups.append({"params": parameters, "lr": RELATIVE_LEARNING_RATE * scale})
    return groups


class Adam:
    """Adam (Kingma & Ba 2015) over parameter groups with their own learning rates, no weight decay.

    Written out because ``torch.optim`` imports ``torch._dynamo`` and ``torch._inductor`` (0.9 s), and with
    those loaded, processes of a torch.distributed (gloo) group crashed now and then at exit (SIGABRT or
    SIGSEGV after their work was done; 8 of 30 runs of a two-process check). The arithmetic is that of
    ``torch.optim.Adam`` on CPU tensors, bit for bit (tested).
    """

    def __init__(self, groups: list[dict], betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        self.groups, self.betas, self.eps = groups, betas, eps
        self.steps = 0
        self.moments = {
            id(p): (torch.zeros_like(p), torch.zeros_like(p)) for g in groups for p in g["params"]
        }

    def zero_grad(self) -> None:
        for group in self.groups:
            for p in group["params"]:
                p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        beta1, beta2 = self.betas
        self.steps += 1
        step = float(self.steps)
        correction1 = 1 - beta1**step
        correction2_sqrt = (1 - beta2**step) ** 0.5
        for group in self.groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                mean, square = self.moments[id(p)]
                mean.lerp_(p.grad, 1 - beta1)
                square.mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
                denominator = (square.sqrt() / correction2_sqrt).add_(self.eps)
                p.addcdiv_(mean, denominator, value=-(group["lr"] / correction1))


def fit_parameters(
    layer: fx.GraphModule,
    groups: list[dict],
    inputs: list[Tensor],
    target: Tensor,
    output: Callable[[Tensor], Tensor],
    *,
    exact: Callable[[Tensor], Tensor] | None = None,
    seed: int = 0,
    stage: str = "fitting weights",
) -> tuple[float, float]:
    """Adjust the parameters of ``groups`` (``trainable_groups``) in place so that ``output(layer(*inputs))``
    approaches ``target`` in mean squared error.

    ``inputs`` are the time-averaged values of the layer's spiking inputs on the calibration samples,
    ``target`` the ANN's values there. ``exact``, given sample indices, returns the true output there (no
    gradients needed): the loss is then taken at the true output while gradients flow through the model
    (``output(layer(...))``), a straight-through estimator. Weights that are exactly zero stay zero (a pruned
    network stays pruned, and its synapse counts hold). Returns the mean squared error before and after; the
    parameters are left as they were when the fit does not lower it. ``stage``: what progress reports call it.
    """
    parameters = [p for group in groups for p in group["params"]]
    count = target.shape[0]
    generator = torch.Generator().manual_seed(seed)
    zeros = [p.detach() == 0 for p in parameters]
    saved = [p.detach().clone() for p in parameters]

    def predict(pick: Tensor, corrections: Tensor | None = None) -> Tensor:
        modelled = output(layer(*(x[pick] for x in inputs)))
        if exact is None:
            return modelled
        if corrections is not None:  # exact minus model, as of the last refresh
            return modelled + corrections[pick]
        with torch.no_grad():
            true = exact(pick)
        return modelled + (true - modelled).detach()

    def parts():
        for start in range(0, count, 256):
            yield torch.arange(start, min(count, start + 256), device=target.device)

    def error(corrections: Tensor | None = None) -> float:
        with torch.no_grad():
            total = sum(float((predict(part, corrections) - target[part]).square().sum()) for part in parts())
            return total / max(1, target.numel())

    def differences() -> Tensor:
        with torch.no_grad():
            return torch.cat([exact(part) - output(layer(*(x[part] for x in inputs))) for part in parts()])

    # Refreshed corrections: the first exact pass serves twice, for the error before and the first steps.
    # Without them the loss is the model's, or (EXACT_REFRESH 0) the exact output's on every mini-batch.
    refresh = exact is not None and EXACT_REFRESH > 0
    corrections = differences() if refresh else None
    before = error(corrections)
    optimizer = Adam(groups)
    with torch.enable_grad():
        for step in progress.steps(ITERATIONS, stage):
            if refresh and step > 0 and step % EXACT_REFRESH == 0:
                corrections = differences()
            pick = torch.randint(count, (min(BATCH_SIZE, count),), generator=generator).to(target.device)
            loss = nn.functional.mse_loss(predict(pick, corrections), target[pick])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                for p, zero in zip(parameters, zeros, strict=True):
                    p.masked_fill_(zero, 0)
    after = error()
    if not after < before:
        with torch.no_grad():
            for p, old in zip(parameters, saved, strict=True):
                p.copy_(old)
        after = before
    return before, after


class SpikingInputs:
    """Per calibration sample, the time average of what some SNN nodes emit over a run (the input node: the
    analog input itself, the same at every step), and with ``trains`` their spike trains too.

    Forward hooks on the neuron layers catch each batch's output, ``[T * B, ...]``; call ``start(x)`` before
    simulating each batch ``x``, ``close()`` after the last. Under torch.distributed every process ends with
    all processes' samples, in the order one process would have seen them.
    """

    def __init__(self, snn, names: set[str], trains: bool = False):
        # In graph order: under torch.distributed every process must gather the nodes in the same order.
        self.parts: dict[str, list[Tensor]] = {
            n.name: [] for n in snn.graph_module.graph.nodes if n.name in names
        }
        self.input_name = next(n.name for n in snn.graph_module.graph.nodes if n.op == "placeholder")
        neurons = [(node.name, neuron) for node, neuron in snn.neuron_nodes() if node.name in names]
        self.handles = [neuron.register_forward_hook(self._hook(name)) for name, neuron in neurons]
        self.trains = trains
        self.spike_values = (
            {name: neuron.unit().detach().clone() for name, neuron in neurons} if trains else {}
        )
        self.graded = {name for name, neuron in neurons if neuron.levels > 1}
        self.spikes: dict[str, list[Tensor]] = {name: [] for name in self.spike_values}
        self.batch = 0

    def _hook(self, name: str):
        def hook(_module, _args, out: Tensor) -> None:
            steps = out.shape[0] // self.batch
            per_step = out.reshape(steps, self.batch, *out.shape[1:])
            self.parts[name].append(per_step.mean(dim=0).contiguous())
            if name in self.spikes and name in self.graded:  # levels per step, [B, T, ...]
                levels = per_step.div(self.spike_values[name].to(out)).round_().transpose(0, 1)
                self.spikes[name].append(levels.to(torch.uint8))
            elif name in self.spikes:
                self.spikes[name].append(packed_steps(per_step.ne(0).transpose(0, 1)))  # [B, T / 8, ...]

        return hook

    def start(self, x: Tensor) -> None:
        self.batch = x.shape[0]
        if self.input_name in self.parts:
            self.parts[self.input_name].append(x)

    def close(self) -> dict[str, Tensor]:
        """The recorded averages, one ``[samples, ...]`` tensor per node."""
        for handle in self.handles:
            handle.remove()
        self.averages = {name: joined_batches(parts) for name, parts in self.parts.items()}
        return self.averages

    def spike_trains(self) -> dict[str, SpikeTrains]:
        """With ``trains``, after ``close``: the recorded neuron layers' spike trains (the input node's: its
        constant value, the recorded average itself)."""
        if not self.trains:
            return {}
        trains = {
            name: SpikeTrains(joined_batches(s), self.spike_values[name], graded=name in self.graded)
            for name, s in self.spikes.items()
        }
        if self.input_name in self.averages:
            trains[self.input_name] = SpikeTrains(self.averages[self.input_name], None)
        return trains


class SpikeTrains:
    """A node's recorded output over T steps, per sample: spikes packed eight steps to a byte
    (``packed_steps``, ``[samples, ceil(T / 8), ...]``) with the value one spike carries (ANN units), or
    with ``graded`` each step's level as a byte (``[samples, T, ...]``, ``value`` one level's worth), or a
    constant analog value ``[samples, ...]`` (``value`` None)."""

    def __init__(self, recorded: Tensor, value: Tensor | None, graded: bool = False):
        self.recorded, self.value, self.graded = recorded, value, graded

    def running_means(self, pick: Tensor, timesteps: int) -> Tensor:
        """``[T, len(pick), ...]``: the output averaged over the steps up to each step t = 1..T."""
        if self.value is None:
            x = self.recorded[pick]
            return x.unsqueeze(0).expand(timesteps, *x.shape)
        spikes = self.recorded[pick] if self.graded else unpacked_steps(self.recorded[pick], timesteps)
        counts = spikes.transpose(0, 1).to(self.value.dtype).cumsum_(dim=0)
        steps = torch.arange(1, timesteps + 1, dtype=counts.dtype, device=counts.device)
        return counts.div_(steps.reshape(-1, *[1] * (counts.dim() - 1))).mul_(self.value)


def packed_steps(spikes: Tensor) -> Tensor:
    """Booleans ``[B, T, ...]`` as bytes ``[B, ceil(T / 8), ...]``, step 8j + k in bit k of byte j: spike
    trains of a whole calibration set, held for the weight fit, take an eighth of the memory."""
    batch, steps, *rest = spikes.shape
    padding = spikes.new_zeros(batch, 8 * packed_length(steps) - steps, *rest)
    bits = torch.cat([spikes, padding], dim=1).reshape(batch, -1, 8, *rest).to(torch.uint8)
    return (bits << _bit_positions(bits)).sum(dim=2, dtype=torch.uint8)


def unpacked_steps(packed: Tensor, timesteps: int) -> Tensor:
    """The inverse of ``packed_steps``: booleans ``[B, timesteps, ...]``."""
    packed = packed.unsqueeze(2)
    bits = (packed >> _bit_positions(packed)) & 1
    return bits.flatten(1, 2)[:, :timesteps].bool()


def packed_length(timesteps: int) -> int:
    """Bytes per neuron of ``timesteps`` packed steps."""
    return -(-timesteps // 8)


def _bit_positions(like: Tensor) -> Tensor:
    """0..7 along dimension 2, broadcastable against ``like``."""
    shape = (1, 1, 8) + (1,) * (like.dim() - 3)
    return torch.arange(8, dtype=torch.uint8, device=like.device).reshape(shape)


def simulated_rates(
    layer: Callable[..., Tensor],
    trains: list[SpikeTrains],
    pick: Tensor,
    timesteps: int,
    threshold: Tensor,
    initial_potential: float,
    levels: int = 1,
) -> Tensor:
    """The rate at T of soft-reset IF neurons (of ``levels`` spike levels) fed by ``layer`` from the recorded ``trains`` (samples ``pick``).

    The ops between neuron layers are affine (their biases added at every step) or max-pools (gated in the
    SNN: they pass on the growth of the max of their inputs' sums), and both commute with a positive scale;
    so the current summed over the first t steps is ``t * layer(means up to t)``, and each step's current is
    the difference of consecutive sums.
    """
    means = [train.running_means(pick, timesteps) for train in trains]
    summed = layer(*(m.flatten(0, 1) for m in means))
    summed = summed.reshape(timesteps, -1, *summed.shape[1:])
    steps = torch.arange(1, timesteps + 1, dtype=summed.dtype, device=summed.device)
    summed = summed * steps.reshape(-1, *[1] * (summed.dim() - 1))
    currents = torch.diff(summed, dim=0, prepend=torch.zeros_like(summed[:1]))
    threshold = threshold.to(currents)
    v = (initial_potential * threshold / levels).expand(currents.shape[1:]).clone()
    _, out = if_scan(v, currents, threshold, Reset.SOFT, update_state=True, levels=levels)
    return out.mean(dim=0)


def joined_batches(parts: list[Tensor]) -> Tensor:
    """This process's batches as one tensor; under torch.distributed every process's, in the order of the
    batches before sharding (process r holds batches r, r + N, ...), so every process fits the same weights."""
    if not active():
        return torch.cat(parts)
    shares = all_gather_objects([p.cpu() for p in parts])  # pickled: CPU tensors
    ordered = [share[i] for i in range(max(map(len, shares))) for share in shares if i < len(share)]
    return torch.cat(ordered).to(parts[0].device if parts else "cpu")
