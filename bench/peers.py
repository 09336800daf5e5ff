"""spikeport against SpikingJelly's and sinabs' conversions of the same trained nets, data and time steps.

The peers are never dependencies of spikeport: this script makes a separate virtual environment (``--venv``,
with the system's packages visible so it uses the same torch), installs SpikingJelly 2.0, sinabs 3.1 and the
few packages they import there with ``--no-deps`` (so nothing can replace torch), and runs the peer side in
it. Every recipe converts each net (``--nets``), calibrates on the first 5,000 training images of the net's
data set where it calibrates at all, and is measured by the same code on the same test images:

- accuracy and agreement with the ANN after every step T = 1..32 (the table shows 1, 2, 4, 8, 16, 32);
- spikes per image up to each T: the spikes of every neuron that replaced a ReLU (the read-out has none), counted
  alike for all (spikeport's recorded counts, forward hooks on the peers' neurons; a sinabs multi-spike neuron's
  step counts as many spikes as it sends), so each accuracy comes with what it costs;
- spikeport's best against the best peer at each T, image by image: on how many test images only one of the two
  is right, and the exact two-sided McNemar p-value of that split (is the difference more than chance?);
- each peer's accuracy at T next to spikeport's default ``calibrated`` network at the longest T' (up to 32) whose
  spikes per image are no more than the peer's at T: who is more accurate for the same spikes;
- on the demo CNN only (speed is issue 8's comparison; the other nets answer issue 7's accuracy question):
  images per second at T = 64 (first 1,000 test images, batches of 100, the analog image at every step), and
  time to agreement: the first T at which the SNN agrees with the ANN on >= 99.5 % of the test images, and
  the time per image of a simulation of that many steps (timed like the speed column). For ``fs`` the code
  length K plays the role of T (its latency is K per coded layer).

Nets: ``demo`` (the demo CNN on MNIST, trained by ``spikeport demo``, cached), and two Fashion-MNIST nets of
``bench/low_latency.py`` (trained there for 5 epochs, cached in results/low-latency): ``fashion-cnn`` (the
demo layout) and ``fashion-vgg-bn-max`` (a VGG with BatchNorm and max-pools), where conversion loses more
and the recipes' differences are larger than one test image; and ``vit-mnist`` and ``vit-fashion``, the small
ViTs of ``bench/transformers.py`` (``spikeport.models.vit``, trained there for 6 epochs, cached in
results/transformers; not in the default ``--nets``). ``calibrated`` fits ReLU nets only, so on the ViTs
spikeport's recipes are bench/transformers.py's rate-coded ones (ecc, percentile, max with soft reset) and
percentile with 4- and 6-bit graded spikes, and ecc stands in for ``calibrated`` in the same-budget table. Every recipe
states the bits one neuron's step carries (bits/spike): 1 for binary spikes, more for graded ones and a sign.

Peer recipes, each as its documentation recommends: SpikingJelly RateCodingRecipe with max, and with 99.9 %
channel-wise, the half-threshold start and max-pools moved before the neurons (``pre_spike_maxpool``);
LocalThresholdBalancingRecipe; sinabs ``from_model`` (multi-spike IAF, subtractive reset) on the raw weights,
and after ``normalize_weights`` (99th percentile, Rueckauer 2017; each ReLU's parameters are those of the
nearest module before it, a BatchNorm where there is one: scaling its weight and bias scales its output).
On the ViT the only peer is SpikingJelly's STATransformerRecipe (Jiang et al., ICLR 2024) in its spiking mode
``spiking_encoder``, with its default threshold_scale 1 and with the 0.5 of its ViT example, converted for each T
of the table (T is part of the recipe: it sets the encoders' thresholds) and run for that T with the image at the
first step only (its operators take temporal differences). It converts ``nn.MultiheadAttention`` only, so it gets
the same ViT with the same weights written that way (``MultiheadViT``); its encoders send multiples of their
threshold (signed), counted like a sinabs multi-spike neuron; between them the network passes analog
differences. sinabs has no transformer conversion (``from_model`` makes ReLUs spiking: a ViT has none).
Run: python bench/peers.py [--nets demo,fashion-cnn,fashion-vgg-bn-max,vit-mnist,vit-fashion] [--limit 10000]
     [--venv results/peers-venv] [--json bench/results/peers.json] [--reuse-peers]
     python bench/peers.py --report [--json ...]   # an earlier run's tables again, from its JSON
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

TIMESTEPS = (1, 2, 4, 8, 16, 32)
SPEED_STEPS = 64
SPEED_IMAGES = 1000
AGREEMENT_TARGET = 0.995
PEER_PACKAGES = ("spikingjelly==2.0.0", "loguru", "sinabs==3.1.3", "nir==1.0.4", "nirtorch==1.0", "pbr")
PEER_MODULES = ("spikingjelly", "sinabs")
# net -> (data set, low_latency.py's name for it; None: the demo CNN)
NETS = {
    "demo": ("mnist", None),
    "fashion-cnn": ("fashion-mnist", "cnn"),
    "fashion-vgg-bn-max": ("fashion-mnist", "vgg-bn-max"),
    "vit-mnist": ("mnist", "vit"),  # bench/transformers.py's ViTs
    "vit-fashion": ("fashion-mnist", "vit"),
}
DEFAULT_NETS = ("demo", "fashion-cnn", "fashion-vgg-bn-max")
TIMED_NETS = ("demo",)  # speed and time to agreement are measured on these
TRANSFORMER_NETS = ("vit-mnist", "vit-fashion")  # spikeport's TRANSFORMER_RECIPES against SpikingJelly's STA
# bench/transformers.py's rate-coded methods, and percentile with graded spikes (4 and 6 bits, and the sign)
TRANSFORMER_RECIPES = (
    "ecc",
    "percentile",
    "max[reset=soft]",
    "percentile[spike_bits=4]",
    "percentile[spike_bits=6]",
)
# SpikingJelly STATransformerRecipe: label -> threshold_scale (1: its default; 0.5: its ImageNet ViT example)
STA_SCALES = {
    "SpikingJelly STA spiking_encoder, for each T": 1.0,
    "SpikingJelly STA spiking_encoder, threshold_scale 0.5, for each T": 0.5,
}
PER_STEP_KEYS = ("accuracy", "agreement", "spikes_per_image", "wrong")  # a recipe's results keyed by T

# simulate(x, T, count) -> (the network's output summed over steps 1..t, for every t: [T, B, classes],
#                           with ``count`` the spikes of its neurons at each step summed over the batch: [T])
Simulate = Callable[[torch.Tensor, int, bool], tuple[torch.Tensor, torch.Tensor | None]]


class SpikeCounter:
    """Counts the spikes of a peer's neurons through forward hooks, step by step, while ``counting``.

    ``per_step(output, steps)`` turns one call's output, in units of ``unit(neuron)`` (what one spike sends),
    into that call's spikes per step ([steps] or a scalar for a call that is one step); the counts of
    consecutive calls are concatenated."""

    def __init__(
        self,
        neurons: list[torch.nn.Module],
        per_step: Callable[[torch.Tensor, int], torch.Tensor],
        unit: Callable[[torch.nn.Module], torch.Tensor | float] = lambda neuron: 1.0,
    ):
        self.per_step, self.unit, self.layers = per_step, unit, len(neurons)
        self.steps, self.counting = 1, False
        self.largest = 0  # the most spikes one neuron sent in one step: what a step's event must carry
        self.calls: list[torch.Tensor] = []
        for neuron in neurons:
            neuron.register_forward_hook(self.hook)

    def hook(self, module, inputs, output) -> None:
        if self.counting:
            spikes = output.detach() / self.unit(module)
            self.largest = max(self.largest, round(float(spikes.abs().max())))
            self.calls.append(self.per_step(spikes, self.steps).double().reshape(-1))

    def start(self, steps: int, counting: bool) -> None:
        self.steps, self.counting, self.calls = steps, counting, []

    def bits_per_spike(self, signed: bool) -> int:
        """Bits one neuron's step sends: enough for the largest count seen, and a sign."""
        return max(1, self.largest.bit_length()) + signed

    def spikes(self) -> torch.Tensor | None:
        """[steps] spikes over the batch (every layer called once per step, or once for all steps)."""
        if not self.counting:
            return None
        counts = torch.stack(self.calls)  # [calls, steps per call]
        return counts.reshape(-1, self.layers, counts.shape[1]).sum(1).reshape(-1)


def ensure_venv(path: Path) -> Path:
    python = path / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(path)], check=True)
    check = subprocess.run(
        [str(python), "-c", "; ".join(f"import {m}" for m in PEER_MODULES)], capture_output=True
    )
    if check.returncode != 0:
        subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", *PEER_PACKAGES], check=True)
    return python


def trained_net(net: str) -> torch.nn.Module:
    """The trained net, from its cache (trained first if it is not there)."""
    dataset, name = NETS[net]
    if name is None:
        from spikeport.demo import demo_model

        return demo_model(progress=False, log=lambda *a: None).eval()
    from spikeport.data import load_dataset

    if name == "vit":  # bench/transformers.py, by path: ``import transformers`` may be Hugging Face's
        spec = importlib.util.spec_from_file_location(
            "bench_transformers", Path(__file__).with_name("transformers.py")
        )
        transformers = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(transformers)
        out = Path("results/transformers")
        out.mkdir(parents=True, exist_ok=True)
        return transformers.trained(dataset, load_dataset(dataset, "train"), 6, out)[0]
    from low_latency import trained  # bench/low_latency.py: its nets and their cache

    return trained(name, load_dataset(dataset, "train"), 5, Path("results/low-latency"), dataset)[0]


def data(net: str, limit: int):
    from spikeport.data import load_dataset

    dataset = NETS[net][0]
    test = load_dataset(dataset, "test").subset(limit)
    calibration = load_dataset(dataset, "train").subset(5000)
    return calibration.x.reshape(-1, 1, 28, 28), test.x.reshape(-1, 1, 28, 28), test.y


def seconds_per_image(simulate: Simulate, x: torch.Tensor, steps: int, repeats: int = 5) -> float:
    """Wall time of ``steps``-step simulations of the first SPEED_IMAGES images, per image (median of
    ``repeats`` passes after a warm-up: one pass moves by 10-40 % on this shared machine)."""
    images = x[:SPEED_IMAGES]
    times = []
    with torch.no_grad():
        simulate(images[:100], steps, False)  # warm-up
        for _ in range(repeats):
            start = time.perf_counter()
            for i in range(0, len(images), 100):
                simulate(images[i : i + 100], steps, False)
            times.append((time.perf_counter() - start) / len(images))
    return statistics.median(times)


def measure(
    simulate: Simulate,
    x: torch.Tensor,
    y: torch.Tensor,
    reference: torch.Tensor,
    timed: bool,
    steps: int = max(TIMESTEPS),
) -> dict:
    """Accuracy, agreement and spikes per image after every step up to ``steps`` (32), the test images each T
    of the table (up to ``steps``) gets wrong, the first T at 99.5 % agreement, and (``timed``) speed at T=64
    and time to that agreement."""
    correct = torch.zeros(steps)
    agree = torch.zeros(steps)
    spikes = torch.zeros(steps, dtype=torch.float64)
    wrong: dict[int, list[int]] = {t: [] for t in TIMESTEPS if t <= steps}
    start = time.perf_counter()
    with torch.no_grad():
        for i in range(0, len(x), 100):
            sums, batch_spikes = simulate(x[i : i + 100], steps, True)
            prediction = sums.argmax(-1)  # [T, B]
            right = prediction == y[i : i + 100]
            correct += right.sum(1)
            agree += (prediction == reference[i : i + 100]).sum(1)
            spikes += batch_spikes
            for t in wrong:
                wrong[t] += (i + torch.nonzero(~right[t - 1]).flatten()).tolist()
    cumulative = spikes.cumsum(0) / len(x)
    result = {
        "accuracy": {t: float(correct[t - 1]) / len(x) for t in range(1, steps + 1)},
        "agreement": {t: float(agree[t - 1]) / len(x) for t in range(1, steps + 1)},
        "spikes_per_image": {t: float(cumulative[t - 1]) for t in range(1, steps + 1)},
        "wrong": wrong,
        "evaluate_seconds": time.perf_counter() - start,
    }
    reached = [t for t, a in result["agreement"].items() if a >= AGREEMENT_TARGET]
    result["steps_to_agreement"] = reached[0] if reached else None
    if timed:
        result["images_per_second_at_64"] = 1.0 / seconds_per_image(simulate, x, SPEED_STEPS)
        result["seconds_per_image_to_agreement"] = (
            seconds_per_image(simulate, x, reached[0]) if reached else None
        )
    return result


def peer_side(net: str, limit: int, out: Path) -> None:
    """Runs inside the peer venv: SpikingJelly and sinabs conversions of ``net`` (SpikingJelly's STA on a ViT)."""
    import copy

    from spikingjelly.activation_based import ann2snn, neuron

    model = trained_net(net)
    calibration, x, y = data(net, limit)
    timed = net in TIMED_NETS
    with torch.no_grad():
        reference = model(x).argmax(1)
    loader = [(calibration[i : i + 100], None) for i in range(0, len(calibration), 100)]
    if net in TRANSFORMER_NETS:  # sinabs makes ReLUs spiking only: a ViT has none
        out.write_text(json.dumps(sta_recipes(model, loader, x, y, reference)))
        return
    jelly = {
        "SpikingJelly RateCoding max": lambda: ann2snn.RateCodingRecipe(dataloader=loader, mode="max"),
        "SpikingJelly RateCoding 99.9% channel-wise, half threshold": lambda: ann2snn.RateCodingRecipe(
            dataloader=loader, mode="99.9%", channel_wise=True, half_threshold=True, pre_spike_maxpool=True
        ),
        "SpikingJelly LocalThresholdBalancing": lambda: ann2snn.LocalThresholdBalancingRecipe(
            dataloader=loader
        ),
    }
    results = {}
    for label, recipe in jelly.items():
        start = time.perf_counter()
        snn = ann2snn.FXConverter(recipe=recipe(), device="cpu").convert(copy.deepcopy(model)).eval()
        converted = time.perf_counter() - start
        simulate = jelly_simulating(snn, [m for m in snn.modules() if isinstance(m, neuron.BaseNode)])
        results[label] = {
            **measure(simulate, x, y, reference, timed),
            "convert_seconds": converted,
            "bits_per_spike": 1,
        }
    for label, normalize in (
        ("sinabs from_model", False),
        ("sinabs from_model, normalize_weights 99%", True),
    ):
        results[label] = sinabs_recipe(model, calibration, normalize, x, y, reference, timed)
    out.write_text(json.dumps(results))


def jelly_simulating(snn: torch.nn.Module, neurons: list[torch.nn.Module]) -> Simulate:
    """A SpikingJelly network as ``measure`` runs it: one call per step, its IF neurons' binary spikes counted."""
    from spikingjelly.activation_based import functional

    counter = SpikeCounter(neurons, lambda out, steps: out.sum())

    def simulate(batch: torch.Tensor, steps: int, count: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        functional.reset_net(snn)
        counter.start(1, count)
        return torch.stack([snn(batch) for _ in range(steps)]).cumsum(0), counter.spikes()

    return simulate


class MultiheadBlock(torch.nn.Module):
    """A block of spikeport's ViT with its attention as ``nn.MultiheadAttention``: qkv's weight and bias are its
    packed in-projection (q, k, v, each split into heads alike), proj its out-projection; same scale."""

    def __init__(self, block: torch.nn.Module):
        super().__init__()
        attention = block.attn
        self.norm1, self.norm2, self.mlp = block.norm1, block.norm2, block.mlp
        self.attn = torch.nn.MultiheadAttention(attention.width, attention.heads, batch_first=True)
        with torch.no_grad():
            self.attn.in_proj_weight.copy_(attention.qkv.weight)
            self.attn.in_proj_bias.copy_(attention.qkv.bias)
            self.attn.out_proj.weight.copy_(attention.proj.weight)
            self.attn.out_proj.bias.copy_(attention.proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        h, _ = self.attn(h, h, h, need_weights=False)  # unpacked, as torchvision's ViT does
        x = x + h
        return x + self.mlp(self.norm2(x))


class MultiheadViT(torch.nn.Module):
    """spikeport's ViT, same function and weights, in the form SpikingJelly's STA recipe converts: attention as
    ``nn.MultiheadAttention`` (its step-mode graph refuses timm's qkv permute, which moves the batch dimension,
    and matmul and softmax calls); the class token and positions stay parameters, which it feeds at step 1."""

    def __init__(self, vit: torch.nn.Module):
        super().__init__()
        self.pool, self.patch_embed = vit.pool, vit.patch_embed
        self.cls_token, self.pos_embed = vit.cls_token, vit.pos_embed
        self.blocks = torch.nn.Sequential(*(MultiheadBlock(block) for block in vit.blocks))
        self.norm, self.head = vit.norm, vit.head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        x = self.norm(self.blocks(x + self.pos_embed))
        return self.head(x[:, 0] if self.pool == "cls" else x.mean(dim=1))


def sta_recipes(
    model: torch.nn.Module, loader: list, x: torch.Tensor, y: torch.Tensor, reference: torch.Tensor
) -> dict:
    """SpikingJelly's STATransformerRecipe (``spiking_encoder``, each of STA_SCALES) on the ViT: a network for
    each T of the table, run for that T; the results keyed by T like spikeport's tuned ``calibrated``."""
    import copy

    from spikingjelly.activation_based import ann2snn

    ann = MultiheadViT(model).eval()
    with torch.no_grad():
        gap = float((ann(x[:100]) - model(x[:100])).abs().max())
    if gap > 1e-4:
        raise RuntimeError(f"MultiheadViT differs from the ViT by {gap} on the first test images")
    results = {}
    for label, scale in STA_SCALES.items():
        tuned, seconds = {}, []
        for t in TIMESTEPS:
            start = time.perf_counter()
            recipe = ann2snn.STATransformerRecipe(
                dataloader=loader, time_steps=t, mode="spiking_encoder", threshold_scale=scale
            )
            snn = ann2snn.FXConverter(recipe=recipe, device="cpu").convert(copy.deepcopy(ann)).eval()
            seconds.append(time.perf_counter() - start)
            simulate, counter = sta_simulating(snn)
            tuned[t] = measure(simulate, x, y, reference, False, steps=t)
            tuned[t]["bits_per_spike"] = counter.bits_per_spike(signed=True)
        reached = [t for t, r in tuned.items() if r["agreement"][t] >= AGREEMENT_TARGET]
        results[label] = {key: {t: r[key][t] for t, r in tuned.items()} for key in PER_STEP_KEYS} | {
            "convert_seconds": max(seconds),
            "evaluate_seconds": sum(r["evaluate_seconds"] for r in tuned.values()),
            "steps_to_agreement": reached[0] if reached else None,
            "bits_per_spike": max(r["bits_per_spike"] for r in tuned.values()),
        }
    return results


def sta_simulating(snn: torch.nn.Module) -> tuple[Simulate, SpikeCounter]:
    """An STA network as ``measure`` runs it, for exactly the T it was converted for (its constants span T
    steps): the image at the first step and zeros after (its operators take temporal differences), all steps
    in one call; each encoder step sends |output / threshold| spikes."""
    from spikingjelly.activation_based import functional
    from spikingjelly.activation_based.ann2snn.recipes.sta_transformer import _STASpikeEncoder

    functional.set_step_mode(snn, "m")
    encoders = [m for m in snn.modules() if isinstance(m, _STASpikeEncoder)]
    counter = SpikeCounter(
        encoders,
        lambda out, steps: out.round().abs().reshape(steps, -1).sum(1),
        unit=lambda encoder: encoder.v_threshold,  # one threshold per channel, the last dimension
    )

    def simulate(batch: torch.Tensor, steps: int, count: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        functional.reset_net(snn)
        counter.start(steps, count)
        frames = torch.zeros(steps, *batch.shape, dtype=batch.dtype)
        frames[0] = batch
        return snn(frames).cumsum(0), counter.spikes()

    return simulate, counter


def relus_and_their_parameters(model: torch.nn.Module) -> tuple[list[str], list[str]]:
    """sinabs ``normalize_weights``' layer names: every ReLU child, and the nearest child with parameters
    before it (a convolution, a linear layer or a BatchNorm)."""
    relus, parameters = [], []
    last = None
    for name, child in model.named_children():
        if isinstance(child, torch.nn.ReLU):
            relus.append(name)
            parameters.append(last)
        elif any(True for _ in child.parameters()):
            last = name
    return relus, parameters


def sinabs_recipe(model, calibration, normalize: bool, x, y, reference, timed: bool) -> dict:
    import copy

    import sinabs
    from sinabs.from_torch import from_model
    from sinabs.utils import normalize_weights

    start = time.perf_counter()
    ann = copy.deepcopy(model)
    if normalize:
        relus, parameters = relus_and_their_parameters(ann)
        normalize_weights(
            ann, calibration[:1000], output_layers=relus, param_layers=parameters, percentile=99
        )
    network = from_model(ann, input_shape=tuple(x.shape[1:]), batch_size=100)
    snn = network.spiking_model.eval()
    converted = time.perf_counter() - start
    neurons = [layer for layer in snn.modules() if hasattr(layer, "num_timesteps")]  # IAFSqueeze
    # [B * T, ...] sample-major; a value is how many spikes the neuron sent in that step
    counter = SpikeCounter(neurons, lambda out, steps: out.reshape(-1, steps, out[0].numel()).sum((0, 2)))

    def simulate(batch: torch.Tensor, steps: int, count: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        sinabs.reset_states(snn)
        for layer in neurons:  # IAFSqueeze layers fold time into the batch: [B * T, ...]
            layer.num_timesteps, layer.batch_size = steps, -1
        counter.start(steps, count)
        frames = batch.unsqueeze(1).expand(batch.shape[0], steps, *batch.shape[1:]).flatten(0, 1)
        out = snn(frames).reshape(batch.shape[0], steps, -1)
        return out.transpose(0, 1).cumsum(0), counter.spikes()

    results = measure(simulate, x, y, reference, timed)
    return {**results, "convert_seconds": converted, "bits_per_spike": counter.bits_per_spike(signed=False)}


def simulating(snn) -> Simulate:
    """A spikeport network as ``measure`` runs it: its read-out (running means: the same argmax as the sums)
    and, when counting, the spikes of its neurons (not of its max-pools, which only pass spikes on). A graded
    spike of n levels counts as n spikes, as a peer's multi-spike step does."""
    neurons = {name: layer for name, layer in snn.spiking_layers().items() if layer.is_neuron}
    graded = {name: layer for name, layer in neurons.items() if layer.spike_bits > 1}
    binary = [name for name in neurons if name not in graded]
    counter = SpikeCounter(
        list(graded.values()),
        lambda out, steps: out.abs().round().reshape(steps, -1).sum(1),
        unit=lambda layer: layer.threshold / layer.levels,
    )

    def simulate(batch: torch.Tensor, steps: int, count: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        # graded layers run all steps in one chunk: each is called once
        counter.start(steps, count and bool(graded))
        run = snn.simulate(batch, steps, record=count, chunk=steps if graded else None)
        if not count:
            return run.readout, None
        spikes = sum((run.spikes[name] for name in binary), torch.zeros(steps, dtype=torch.float64))
        return run.readout, spikes + counter.spikes() if graded else spikes

    return simulate


def spike_bits(snn) -> int:
    """Bits one of ``snn``'s neurons sends per step: its graded levels' and a sign's."""
    return max(
        layer.spike_bits + bool(getattr(layer, "signed", False)) for layer in snn.spiking_layers().values()
    )


def our_side(net: str, limit: int) -> tuple[dict, float]:
    """spikeport's recipes: ``calibrated`` tuned for T = 8 (one network for every T), tuned for each T of the
    table (``calibrated[timesteps=T]``, a network per column: the user names the T they will run), ``ecc``, and
    (on timed nets) ``fs`` (temporal coding, by code length K); on a ViT TRANSFORMER_RECIPES instead (calibrated
    fits ReLU nets only); and the ANN's accuracy on the test images."""
    import spikeport as sp
    from spikeport.methods.calibrated import Calibrated

    model = trained_net(net)
    calibration, x, y = data(net, limit)
    timed = net in TIMED_NETS
    with torch.no_grad():
        reference = model(x).argmax(1)

    def run(spec: str) -> dict:
        start = time.perf_counter()
        snn = sp.convert(model, calibration, spec)
        converted = time.perf_counter() - start
        results = measure(simulating(snn), x, y, reference, timed)
        return {**results, "convert_seconds": converted, "bits_per_spike": spike_bits(snn)}

    ann = float((reference == y).float().mean())
    if net in TRANSFORMER_NETS:
        return {f"spikeport {spec}": run(spec) for spec in TRANSFORMER_RECIPES}, ann
    results = {f"spikeport {spec}": run(spec) for spec in ("calibrated", "ecc")}
    # calibrated's default T is one of these: that column is the default network, not converted again
    default_steps = Calibrated.timesteps
    tuned = {
        t: results["spikeport calibrated"] if t == default_steps else run(f"calibrated[timesteps={t}]")
        for t in TIMESTEPS
    }
    results["spikeport calibrated[timesteps=T], tuned for each T"] = {
        key: {t: r[key][t] for t, r in tuned.items()} for key in PER_STEP_KEYS
    } | {
        "convert_seconds": max(r["convert_seconds"] for r in tuned.values()),
        "tuned": {t: {k: v for k, v in r.items() if k not in PER_STEP_KEYS} for t, r in tuned.items()},
    }
    if timed:
        results["spikeport fs"] = fs_recipe(model, calibration, x, y)
    return results, ann


def fs_recipe(model, calibration, x, y) -> dict:
    """FS coding: accuracy per code length K, and the time per image of the shortest K reaching 99.5 %."""
    import spikeport as sp

    start = time.perf_counter()
    snn = sp.convert(model, calibration, "fs")
    converted = time.perf_counter() - start
    codes = [k for k in snn.supported_steps() if k <= max(TIMESTEPS)]
    ev = sp.evaluate(snn, (x, y), codes, ann=model, progress=False)
    reached = [k for k in codes if ev.agreement[k] >= AGREEMENT_TARGET]

    def simulate(batch: torch.Tensor, steps: int, count: bool) -> tuple[torch.Tensor, None]:
        return snn.simulate(batch, steps).readout, None

    return {
        "accuracy": ev.accuracy,
        "agreement": ev.agreement,
        "convert_seconds": converted,
        "latency_per_k": ev.latency_steps[reached[0]] / reached[0] if reached else None,
        "steps_to_agreement": reached[0] if reached else None,
        "seconds_per_image_to_agreement": seconds_per_image(simulate, x, reached[0]) if reached else None,
    }


def keyed_by_int(results: dict) -> dict:
    """JSON turns the T keys into strings; back to ints."""
    for r in results.values():
        for key in PER_STEP_KEYS:
            if key in r:  # fs reports no spikes or wrong images here
                r[key] = {int(t): a for t, a in r[key].items()}
    return results


def cell(r: dict, t: int) -> str:
    if t not in r["accuracy"]:
        return "—"
    return f"{100 * r['accuracy'][t]:.2f} ({100 * r['agreement'][t]:.2f})"


def report(net: str, ours: dict, peers: dict, ann: float, limit: int) -> dict:
    """Prints the net's tables (accuracy, spikes, image by image, same budget, speed); returns its summary."""
    everything = {**ours, **peers}
    print(f"\n{net}: {NETS[net][0]}, {limit} test images; ANN {100 * ann:.2f}%. Accuracy % (agreement %):\n")
    print_header("method", "bits/spike", "convert s")
    rate = {k: r for k, r in everything.items() if k != "spikeport fs"}
    for label, r in rate.items():
        cells = " | ".join(cell(r, t) for t in TIMESTEPS)
        print(f"| {label} | {cells} | {r.get('bits_per_spike', 1)} | {r['convert_seconds']:.1f} |")
    print(
        "\nSpikes per image, thousands (all neurons, steps 1..T; a step that sends n spikes at once counts n;"
        "\nbits/spike above: what one neuron's step carries, sign included):\n"
    )
    print_header("method")
    for label, r in rate.items():
        print(
            f"| {label} | " + " | ".join(f"{r['spikes_per_image'][t] / 1000:.1f}" for t in TIMESTEPS) + " |"
        )
    ours_rate = {k: r for k, r in ours.items() if k in rate}
    pairs = {t: (best(ours_rate, t), best(peers, t)) for t in TIMESTEPS}  # spikeport's best, the best peer
    gaps = {
        t: round(100 * (ours_rate[mine]["accuracy"][t] - peers[theirs]["accuracy"][t]), 2)
        for t, (mine, theirs) in pairs.items()
    }
    ahead = {t: gap >= 0 for t, gap in gaps.items()}
    error = 100 * (ann * (1 - ann) / limit) ** 0.5
    print(f"\nspikeport's best >= the best peer at every T: {all(ahead.values())} ({ahead})")
    print(
        f"spikeport's best - best peer, points: {gaps}; one image is {100 / limit:.2f} points, the binomial"
    )
    print(f"standard error of one accuracy at the ANN's level on these images {error:.2f} points")
    paired = report_paired(ours_rate, peers, pairs)
    default = "spikeport ecc" if net in TRANSFORMER_NETS else "spikeport calibrated"  # one network, every T
    report_same_budget(default, ours[default], peers)
    summary = {
        "ann_accuracy": ann,
        "test_images": limit,
        "results": everything,
        "ahead": ahead,
        "gaps": gaps,
        "paired": paired,
    }
    if net in TIMED_NETS:
        summary["speedup"] = report_speed(ours, peers)
    return summary


def report_paired(ours: dict, peers: dict, pairs: dict[int, tuple[str, str]]) -> dict[int, dict]:
    """spikeport's best against the best peer at each T (``pairs``: their labels), image by image; returns
    the comparisons."""
    print("\nspikeport's best against the best peer, image by image:\n")
    print(
        "| T | spikeport's best | best peer | only spikeport right | only the peer right | McNemar p "
        "| spikes, spikeport / peer |"
    )
    print("|---:|:---|:---|---:|---:|---:|---:|")
    paired = {}
    for t, (mine, theirs) in pairs.items():
        paired[t] = c = paired_comparison(ours[mine], peers[theirs], t)
        spikes = ours[mine]["spikes_per_image"][t] / peers[theirs]["spikes_per_image"][t]
        print(
            f"| {t} | {mine} | {theirs} | {c['only_ours']} | {c['only_peer']} | {c['p']:.2f} | {spikes:.2f} |"
        )
    return paired


def report_same_budget(label: str, default: dict, peers: dict) -> None:
    """Each peer's accuracy at T next to spikeport's default network (``label``) with no more spikes per image."""
    print(
        f"\nAt the same spike budget: each peer's accuracy % at T, and {label}'s (one network, every"
        "\nT) at the longest T' whose spikes per image are no more than the peer's at T, as peer / spikeport (T'):\n"
    )
    print_header("peer")
    for label, r in peers.items():
        cells = []
        for t in TIMESTEPS:
            matched = longest_within_budget(default, r["spikes_per_image"][t])
            ours_cell = "—" if matched is None else f"{100 * default['accuracy'][matched]:.2f} ({matched})"
            cells.append(f"{100 * r['accuracy'][t]:.2f} / {ours_cell}")
        print(f"| {label} | " + " | ".join(cells) + " |")


def print_header(first: str, *last: str) -> None:
    """A markdown table's header: ``first``, a column per T of the table, then ``last``."""
    columns = [first, *(f"T={t}" for t in TIMESTEPS), *last]
    print("| " + " | ".join(columns) + " |")
    print("|:---|" + "---:|" * (len(columns) - 1))


def best(results: dict, t: int) -> str:
    """The most accurate recipe at T (the first of equals)."""
    return max(results, key=lambda label: results[label]["accuracy"][t])


def longest_within_budget(result: dict, spikes: float) -> int | None:
    """The longest simulation of ``result`` (T = 1..32) whose spikes per image do not exceed ``spikes``."""
    within = [t for t, used in result["spikes_per_image"].items() if used <= spikes]
    return max(within, default=None)


def paired_comparison(ours: dict, peer: dict, t: int) -> dict:
    """On how many test images exactly one of two recipes is right at T, and the exact two-sided McNemar
    p-value: the chance of a split at least this uneven if each such image were a fair coin."""
    ours_wrong, peer_wrong = set(ours["wrong"][t]), set(peer["wrong"][t])
    only_ours, only_peer = len(peer_wrong - ours_wrong), len(ours_wrong - peer_wrong)
    n = only_ours + only_peer
    tail = sum(math.comb(n, k) for k in range(min(only_ours, only_peer) + 1)) / 2**n
    return {"only_ours": only_ours, "only_peer": only_peer, "p": min(1.0, 2 * tail)}


def report_speed(ours: dict, peers: dict) -> float | None:
    """The speed table; returns the fastest peer's time to agreement over spikeport's fastest."""
    print(
        f"\nSpeed (first {SPEED_IMAGES} images, batches of 100) and time to {100 * AGREEMENT_TARGET:.1f} % agreement:\n"
    )
    print("| method | images/s at T=64 | T to agreement | ms/image to agreement |")
    print("|:---|---:|---:|---:|")
    timed = {k: r for k, r in {**ours, **peers}.items() if "seconds_per_image_to_agreement" in r}
    for label, r in timed.items():
        speed = f"{r['images_per_second_at_64']:.0f}" if "images_per_second_at_64" in r else "—"
        steps = r["steps_to_agreement"]
        reach = "not within 32" if steps is None else (f"K={steps}" if label.endswith(" fs") else str(steps))
        ms = r["seconds_per_image_to_agreement"]
        print(f"| {label} | {speed} | {reach} | {'—' if ms is None else f'{1000 * ms:.3f}'} |")

    def fastest(results: dict) -> float | None:
        times = [r.get("seconds_per_image_to_agreement") for r in results.values()]
        return min((t for t in times if t), default=None)

    fastest_peer, fastest_ours = fastest(peers), fastest(ours)
    speedup = fastest_peer / fastest_ours if fastest_peer and fastest_ours else None
    if speedup:
        print(f"\ntime to agreement, fastest peer / fastest spikeport recipe: {speedup:.2f}x")
    return speedup


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--nets", default=",".join(DEFAULT_NETS), help=f"comma-separated, of {', '.join(NETS)}"
    )
    parser.add_argument("--limit", type=int, default=10000)
    parser.add_argument("--venv", default="results/peers-venv")
    parser.add_argument("--json", default="bench/results/peers.json")
    parser.add_argument("--report", action="store_true", help="print the tables of an earlier run's --json")
    parser.add_argument(
        "--reuse-peers",
        action="store_true",
        help="take the peers' results from an earlier run's files (same --json, nets and --limit) instead of "
        "running them again: only spikeport's side runs",
    )
    parser.add_argument("--peer-side", nargs=2, help=argparse.SUPPRESS)  # internal: NET OUT, in the venv
    args = parser.parse_args()
    if args.peer_side:
        peer_side(args.peer_side[0], args.limit, Path(args.peer_side[1]))
        return
    if args.report:
        for net, summary in json.loads(Path(args.json).read_text())["nets"].items():
            results = keyed_by_int(summary["results"])
            ours = {k: r for k, r in results.items() if k.startswith("spikeport")}
            peers = {k: r for k, r in results.items() if k not in ours}
            report(net, ours, peers, summary["ann_accuracy"], summary.get("test_images", args.limit))
        return
    nets = args.nets.split(",")
    unknown = [net for net in nets if net not in NETS]
    if unknown:
        parser.error(f"unknown nets {unknown}: choose from {', '.join(NETS)}")
    python = ensure_venv(Path(args.venv))
    summaries = {}
    for net in nets:
        ours, ann = our_side(net, args.limit)  # first: it trains the net if it is not cached yet
        peer_json = Path(args.json).with_suffix(f".{net}.peer.json")
        peer_json.parent.mkdir(parents=True, exist_ok=True)
        if not (args.reuse_peers and peer_json.is_file()):
            subprocess.run(
                [str(python), __file__, "--limit", str(args.limit), "--peer-side", net, str(peer_json)],
                check=True,
            )
        peers = keyed_by_int(json.loads(peer_json.read_text()))
        summaries[net] = report(net, ours, peers, ann, args.limit)
    Path(args.json).write_text(json.dumps({"nets": summaries}, indent=2))
    print(f"JSON: {args.json}")


if __name__ == "__main__":
    main()
