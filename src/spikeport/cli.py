"""The `spikeport` command: demo, train, convert, evaluate, compare, fit-fs."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

import spikeport as sp
from spikeport import demo, fs_fit, train
from spikeport._version import __version__
from spikeport.calibration import DEFAULT_CALIBRATION_SAMPLES
from spikeport.compare import DEFAULT_CODES, DEFAULT_METHODS, DEFAULT_TIMESTEPS
from spikeport.convert import DEFAULT_METHOD
from spikeport.cpu_allocator import keep_freed_memory
from spikeport.data import ArrayDataset, load_dataset
from spikeport.data.specs import parse_spec, split_options
from spikeport.distributed import default_device, finish, init_from_environment, is_main
from spikeport.errors import DataError, OptionError, SaveFormatError, SpikeportError
from spikeport.frontends.dispatch import (
    MODEL_SUFFIXES,
    WEIGHT_SUFFIXES,
    _load_weights,
    builds_random_weights,
    load_model,
)
from spikeport.fs_codes import FITTED_ACTIVATIONS, SHIPPED_CODES, fits_as_well, read_library, user_codes_dir
from spikeport.methods.base import parse_method
from spikeport.options import split_specs
from spikeport.progress import reporting
from spikeport.train import accuracy, default_augmentation, read_checkpoint

MODEL_HELP = "a .pt2 file (torch.export), an .onnx file, a Keras .keras/.h5 file, or package.module:factory"


EVALUATE_TIMESTEPS = (8, 16, 32, 64, 128)  # what `evaluate` runs a rate-coded network for by default
DEVICE_HELP = "cpu, cuda or cuda:N (default: the GPU when there is one; under torchrun each process's own)"
# The pip command that brings a missing optional module.
INSTALL_HINTS = {
    "onnx": "pip install spikeport[onnx]",
    "h5py": "pip install spikeport[keras]",
    "nir": "pip install spikeport[nir]",
    "triton": "pip install spikeport[gpu]",
}


class UsageError(Exception):
    """A command line that argparse refused; reported as one line like every other error."""


class _Parser(argparse.ArgumentParser):
    """argparse with its errors raised, not printed after the usage: main prints them as one line."""

    def error(self, message: str):
        raise UsageError(f"{message} (see {self.prog} --help)")


def _positive(text: str) -> int:
    """A count (samples, epochs, levels, steps...): zero or less is a typo, refused before any work."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def _device(text: str) -> str:
    """A device this machine has: torch would refuse it only mid-run, with a traceback."""
    try:
        device = torch.device(text)
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"unknown device {text!r}; give cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise argparse.ArgumentTypeError(
                "no CUDA device here (this torch is a CPU build or no GPU is visible); use --device cpu"
            )
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise argparse.ArgumentTypeError(
                f"no {text} here: {count} CUDA device(s), cuda:0 to cuda:{count - 1}"
            )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise argparse.ArgumentTypeError("no MPS device here; use --device cpu")
    return text


def _samples(text: str) -> int | None:
    """A sample count, or ``all`` (None: every sample)."""
    return None if text.strip().lower() == "all" else _positive(text)


def _timesteps(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"time steps must be integers separated by commas, got {text!r}"
        ) from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"time steps must be positive, got {text!r}")
    return values


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="spikeport", description="Convert ANNs to spiking networks and measure them.")
    parser.add_argument("--debug", action="store_true", help="on an error, show its traceback")
    parser.add_argument("--version", action="version", version=f"spikeport {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    demo_command = commands.add_parser(
        "demo",
        help="MNIST end to end: train (cached), convert with the default (ecc, 4-bit spikes), ecc, rmp, percentile "
        "and fs, plot",
    )
    demo_command.add_argument(
        "--out",
        help="folder for the plot, table and JSON (default: demo/ in spikeport's cache folder, "
        "$SPIKEPORT_CACHE or ~/.cache/spikeport)",
    )
    demo_command.add_argument(
        "--limit",
        type=_positive,
        default=2000,
        help="evaluate the first N test images (default 2000; 10000 = all)",
    )
    demo_command.add_argument("--quiet", action="store_true", help="no progress bars")

    train_command = commands.add_parser(
        "train", help="train an ANN to convert (small, honest loop; CPU or CUDA)"
    )
    train_command.add_argument(
        "model", help="package.module:factory[options], e.g. spikeport.models:resnet20[width=8]"
    )
    train_command.add_argument(
        "--data", required=True, help="dataset spec; trains on its train split, tests on test"
    )
    train_command.add_argument("--epochs", type=_positive, default=10)
    train_command.add_argument("--batch-size", type=_positive, default=128)
    train_command.add_argument("--optimizer", choices=["adamw", "sgd"], default="adamw")
    train_command.add_argument(
        "--lr", type=float, help="peak learning rate (default 2e-3 for adamw, 0.1 for sgd)"
    )
    train_command.add_argument("--weight-decay", type=float, default=5e-4)
    train_command.add_argument(
        "--augment",
        choices=["auto", "none", "crop", "crop-flip"],
        default="auto",
        help="auto: random crops and flips for colour images of 32x32 and more, none otherwise",
    )
    train_command.add_argument("--device", type=_device, help="cpu or cuda (default: cuda when available)")
    train_command.add_argument("--limit", type=_positive, help="train on the first N training samples only")
    train_command.add_argument("--seed", type=int, default=0)
    train_command.add_argument(
        "--qcfs",
        type=_positive,
        metavar="L",
        help="train with QCFS activations of L levels (convert with --qcfs L)",
    )
    train_command.add_argument(
        "-o", "--output", required=True, help="where to save the weights (state_dict .pt)"
    )
    train_command.add_argument(
        "--checkpoint", help="checkpoint file, written after every epoch; an existing one is resumed"
    )
    train_command.add_argument("--quiet", action="store_true")
    convert = commands.add_parser("convert", help="convert a model into a saved SpikingNetwork")
    convert.add_argument("model", help=MODEL_HELP)
    convert.add_argument("--weights", help="state_dict file for a factory model")
    convert.add_argument(
        "--qcfs", type=_positive, metavar="L", help="the weights were trained with `spikeport train --qcfs L`"
    )
    convert.add_argument("--data", required=True, help="calibration data spec, e.g. mnist:train or npz:FILE")
    convert.add_argument(
        "--method",
        default=DEFAULT_METHOD,
        help=f"rmp, ecc, max, percentile, calibrated, qcfs or fs, optionally with options: max[reset=soft], "
        f"calibrated[timesteps=4], fs[steps=16] (default {DEFAULT_METHOD}: ecc with 4-bit graded spikes)",
    )
    convert.add_argument("--reset", choices=["soft", "hard"])
    convert.add_argument(
        "--initial-potential", type=float, help="membrane at t=0 as a fraction of the threshold"
    )
    convert.add_argument("--channelwise", action="store_true", default=None, help="one threshold per channel")
    convert.add_argument("--alpha", type=float, help="rmp: threshold scale")
    convert.add_argument("--percentile", type=float, help="percentile: which percentile (default 99.9)")
    convert.add_argument(
        "--calibration-timesteps", type=_positive, help="rmp: steps simulated per calibration pass"
    )
    convert.add_argument(
        "--thresholding", type=float, help="ecc: initial membrane as a fraction of Vth (default 0.5)"
    )
    convert.add_argument("--weight-bits", type=_positive, help="ecc: quantise weights to N signed bits")
    convert.add_argument("--steps", type=_positive, help="fs: code length K a plain run uses (default 8)")
    convert.add_argument("--rounding", choices=["nearest", "floor"], help="fs: binary code rounding")
    convert.add_argument(
        "--input-coding", choices=["analog", "fs"], help="fs: inject the input, or code it with FS neurons"
    )
    convert.add_argument(
        "--max-to-avg",
        action="store_true",
        default=None,
        help="replace max-pools by average pools (default: spiking max-pools)",
    )
    convert.add_argument(
        "--calibration-samples",
        type=_samples,
        default=DEFAULT_CALIBRATION_SAMPLES,
        help=f"calibrate on the first N samples (default {DEFAULT_CALIBRATION_SAMPLES}; 'all': every sample)",
    )
    convert.add_argument("--encoding", choices=["analog", "poisson"], default="analog")
    convert.add_argument("--device", type=_device, help=DEVICE_HELP)
    convert.add_argument("-o", "--output", required=True, help="where to save the network (.spk)")
    convert.add_argument("--quiet", action="store_true", help="no progress reports")

    evaluate = commands.add_parser("evaluate", help="accuracy, agreement, spikes, SOPs and energy at each T")
    evaluate.add_argument("network", help="a file written by `spikeport convert`")
    evaluate.add_argument("--data", required=True, help="test data spec, e.g. mnist:test")
    evaluate.add_argument(
        "--timesteps",
        type=_timesteps,
        help="T for rate-coded networks (default 8,16,32,64,128), code lengths K for fs (default: its codes)",
    )
    evaluate.add_argument("--limit", type=_positive, help="first N samples only")
    evaluate.add_argument("--batch-size", type=_positive, default=100)
    evaluate.add_argument("--device", type=_device, help=DEVICE_HELP)
    evaluate.add_argument("--json", help="write the evaluation as JSON")
    evaluate.add_argument("--plot", help="write accuracy-vs-T and accuracy-vs-SOPs as PNG")
    evaluate.add_argument("--quiet", action="store_true")
    compare = commands.add_parser(
        "compare", help="convert one model with several methods: one table, one accuracy-vs-cost plot"
    )
    compare.add_argument("model", help=MODEL_HELP)
    compare.add_argument("--weights", help="state_dict file for a factory model")
    compare.add_argument("--data", required=True, help="test data spec, e.g. mnist:test")
    compare.add_argument("--calibration", help="calibration data spec (default: the train split of --data)")
    compare.add_argument(
        "--methods",
        type=_methods,
        default=list(DEFAULT_METHODS),
        help=f"comma-separated method specs (default {','.join(DEFAULT_METHODS)}), e.g. "
        "ecc,ecc[weight_bits=8],max[reset=soft]",
    )
    compare.add_argument("--timesteps", type=_timesteps, default=list(DEFAULT_TIMESTEPS))
    compare.add_argument(
        "--codes",
        type=_timesteps,
        default=list(DEFAULT_CODES),
        help="code lengths K for temporal methods (fs), where their codes exist",
    )
    compare.add_argument("--limit", type=_positive, help="first N test samples only")
    compare.add_argument(
        "--calibration-samples",
        type=_samples,
        default=DEFAULT_CALIBRATION_SAMPLES,
        help=f"calibrate on the first N samples (default {DEFAULT_CALIBRATION_SAMPLES}; 'all': every sample)",
    )
    compare.add_argument("--batch-size", type=_positive, default=100)
    compare.add_argument("--device", type=_device, help=DEVICE_HELP)
    compare.add_argument("--cost", choices=["sops", "energy"], default="sops", help="x axis of the plot")
    compare.add_argument("--out", default="spikeport-compare", help="folder for table, plot and JSON")
    compare.add_argument("--quiet", action="store_true")
    fit = commands.add_parser(
        "fit-fs", help="fit FS codes to an activation (silu, sigmoid, ...) and report the fit error"
    )
    fit.add_argument("activation", help="an activation name, or 'all'")
    fit.add_argument("--steps", type=_timesteps, default=[8], help="code lengths K, e.g. 8,16 (default 8)")
    fit.add_argument("--iterations", type=_positive, default=600, help="gradient steps per start")
    fit.add_argument(
        "--out", help="JSON file to add the codes to (default: the user's code library, used by conversions)"
    )
    fit.add_argument("--quiet", action="store_true", help="no progress reports")
    for command in commands.choices.values():  # --debug after the command too; SUPPRESS keeps the top one
        command.add_argument(
            "--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
        )
    return parser


def _methods(text: str) -> list[str]:
    """Split on the commas that separate methods, not those inside NAME[option=value, ...]."""
    specs = split_specs(text)
    try:
        for spec in specs:
            parse_method(spec)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    if not specs:
        raise argparse.ArgumentTypeError("give at least one method, e.g. ecc,rmp,percentile")
    return specs


def _calibration_spec(data: str) -> str:
    """The train split of the dataset that ``data`` names, with the same options (normalisation, crop)."""
    body, _ = split_options(data)
    name, argument, _ = parse_spec(body)
    return ":".join(part for part in (name, argument, "train") if part) + data[len(body) :]


def _convert(args: argparse.Namespace) -> None:
    model = _model_with_qcfs(args).to(args.device or default_device())
    _note_random_weights(args)
    names = [
        "reset",
        "initial_potential",
        "channelwise",
        "alpha",
        "percentile",
        "calibration_timesteps",
        "thresholding",
        "weight_bits",
        "max_to_avg",
        "steps",
        "rounding",
        "input_coding",
    ]
    options = {name: getattr(args, name) for name in names if getattr(args, name) is not None}
    snn = sp.convert(
        model,
        args.data,
        args.method,
        encoding=args.encoding,
        calibration_samples=args.calibration_samples,
        progress=not args.quiet,
        **options,
    )
    if not is_main():  # under torchrun every process calibrated its share; one writes the result
        return
    snn.info["model"] = Path(args.model).name if Path(args.model).is_file() else args.model
    path = sp.save(snn, args.output)
    layers = sum(layer.is_neuron for layer in snn.spiking_layers().values())
    print(f"converted with {args.method} ({layers} neuron layers); saved to {path}")
    for note in snn.info.get("notes", []):
        print(f"note: {note}")


def _note_random_weights(args: argparse.Namespace) -> None:
    """A factory without --weights converts its random initialisation: legal, but rarely what was meant."""
    if args.weights is None and is_main() and builds_random_weights(args.model):
        print(
            f"spikeport: warning: {args.model} has no --weights: converting its random initialisation",
            file=sys.stderr,
        )


def _model_with_qcfs(args: argparse.Namespace):
    """The model to convert; with --qcfs L, rebuilt with QCFS activations before its weights load."""
    if not args.qcfs:
        return load_model(args.model, args.weights)
    model = sp.qcfs.prepare(load_model(args.model), levels=args.qcfs)
    if args.weights:
        _load_weights(model, Path(args.weights))
    return model.eval()


def _train(args: argparse.Namespace) -> None:
    device = args.device or default_device()
    model = load_model(args.model)
    if args.qcfs:
        model = sp.qcfs.prepare(model, levels=args.qcfs)
    read_checkpoint(args.checkpoint, model)  # a bad one fails now, not after loading the data
    train_set, test_set = load_dataset(args.data, "train"), load_dataset(args.data, "test")
    if not isinstance(train_set, ArrayDataset) or not isinstance(test_set, ArrayDataset):
        raise DataError(
            f"spikeport train holds its data in memory and {args.data} is read image by image; train on an "
            "image folder with your own loop, then convert the model with --data folder:..."
        )
    if train_set.y is None:
        raise DataError(f"{args.data} has no labels; training needs (x, y) data")
    x, y = train_set.x[: args.limit], train_set.y[: args.limit]
    augmentation = default_augmentation(x) if args.augment == "auto" else args.augment
    lr = args.lr if args.lr is not None else (0.1 if args.optimizer == "sgd" else 2e-3)
    print(
        f"training {args.model} on {len(x)} samples of {args.data} for {args.epochs} epoch(s) "
        f"({args.optimizer}, lr {lr}, augmentation {augmentation}, {device})"
    )
    start = time.perf_counter()
    train.train_classifier(
        model,
        x,
        y,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=lr,
        weight_decay=args.weight_decay,
        optimizer=args.optimizer,
        augmentation=augmentation,
        device=device,
        checkpoint=args.checkpoint,
        seed=args.seed,
        progress=not args.quiet,
    )
    seconds = time.perf_counter() - start
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.cpu().state_dict(), output)
    print(f"trained in {seconds:.0f} s", end="")
    if test_set.y is not None:
        test_accuracy = accuracy(model, test_set.x, test_set.y)
        print(f"; test accuracy {100 * test_accuracy:.2f}% on {len(test_set)} samples", end="")
    print()
    print(f"weights: {output} (use: --weights {output})")


def _load_network(args: argparse.Namespace):
    """The network to evaluate; a model file given instead gets told how to convert it."""
    try:
        return sp.load(args.network, device=args.device or default_device())
    except SaveFormatError:
        path = Path(args.network)
        if not path.is_file() or path.suffix.lower() not in MODEL_SUFFIXES + WEIGHT_SUFFIXES:
            raise
    model = f"{path}" if path.suffix.lower() in MODEL_SUFFIXES else f"package.module:factory --weights {path}"
    raise SaveFormatError(
        f"evaluate takes a network saved by `spikeport convert`; convert {path.name} first: "
        f"spikeport convert {model} --data ... -o net.spk"
    ) from None


def _evaluate(args: argparse.Namespace) -> None:
    snn = _load_network(args)
    steps = args.timesteps or snn.coding.evaluation_steps(snn, list(EVALUATE_TIMESTEPS), list(DEFAULT_CODES))
    ev = sp.evaluate(
        snn,
        args.data,
        steps,
        batch_size=args.batch_size,
        limit=args.limit,
        progress=not args.quiet,
    )
    if not is_main():
        return
    print(ev.to_markdown())
    if args.json:
        print(f"JSON: {ev.to_json(args.json)}")
    if args.plot:
        print(f"plot: {ev.plot(args.plot)}")


def _compare(args: argparse.Namespace) -> None:
    model = load_model(args.model, args.weights).to(args.device or default_device())
    _note_random_weights(args)
    calibration = args.calibration or _calibration_spec(args.data)
    first = "all samples" if args.calibration_samples is None else f"first {args.calibration_samples}"
    print(f"calibrating on {calibration} ({first}), testing on {args.data}")
    comparison = sp.compare(
        model,
        calibration,
        args.data,
        args.methods,
        args.timesteps,
        codes=args.codes,
        calibration_samples=args.calibration_samples,
        limit=args.limit,
        batch_size=args.batch_size,
        progress=not args.quiet,
        log=print,
    )
    out = Path(args.out)
    table = comparison.to_markdown()
    (out / "results.md").parent.mkdir(parents=True, exist_ok=True)
    (out / "results.md").write_text(table)
    print(table)
    print(f"plot: {comparison.plot(out / 'accuracy.png', cost=args.cost)}")
    print(f"table: {out / 'results.md'}\nJSON: {comparison.to_json(out / 'comparison.json')}")


def _fit_fs(args: argparse.Namespace) -> None:
    names = sorted(FITTED_ACTIVATIONS) if args.activation == "all" else [args.activation]
    unknown = [n for n in names if n not in FITTED_ACTIVATIONS]
    if unknown:
        raise OptionError(
            f"no FS fit for {unknown[0]!r}; activations: {', '.join(sorted(FITTED_ACTIVATIONS))} "
            "(relu needs none: its binary code is exact)"
        )
    shipped, notes = read_library(SHIPPED_CODES), []
    print("| activation | K | range | max error | RMS error | seconds |\n|:---|---:|:---|---:|---:|---:|")
    for name in names:
        path = Path(args.out) if args.out else user_codes_dir() / f"{name}.json"
        library = read_library(path)
        for steps in args.steps:
            with reporting("fit-fs", not args.quiet):
                result = fs_fit.fit_code(FITTED_ACTIVATIONS[name], steps, iterations=args.iterations)
            library.setdefault(name, {})[steps] = result.to_dict()
            print(
                f"| {name} | {steps} | [{result.low:g}, {result.high:g}] | {result.max_error:.4f} | "
                f"{result.rms_error:.4f} | {result.seconds:.1f} |",
                flush=True,
            )
            path.parent.mkdir(parents=True, exist_ok=True)
            ordered = {a: {str(k): v[k] for k in sorted(v)} for a, v in sorted(library.items())}
            path.write_text(json.dumps(ordered, indent=1) + "\n")
            theirs = shipped.get(name, {}).get(steps)
            if not args.out and not fits_as_well(result.to_dict(), theirs):
                notes.append(
                    f"note: {name} K={steps}: RMS error {result.rms_error:.4f} is worse than the shipped code's "
                    f"{theirs['rms_error']:.4f}, so conversions keep the shipped code (more --iterations?)"
                )
    print(f"codes written to {path if len(names) == 1 or args.out else user_codes_dir()}")
    for note in notes:
        print(note)


# Output options of each command: (attribute, option, whether it names a folder). Checked before any work,
# so a bad path fails in a second rather than after the whole simulation.
OUTPUTS = {
    "demo": [("out", "--out", True)],
    "train": [("output", "-o", False), ("checkpoint", "--checkpoint", False)],
    "convert": [("output", "-o", False)],
    "evaluate": [("json", "--json", False), ("plot", "--plot", False)],
    "compare": [("out", "--out", True)],
    "fit-fs": [("out", "--out", False)],
}


def check_output(path: str | Path, option: str, *, folder: bool = False) -> None:
    """Refuse an output path that cannot be written: a file that is a folder (or the reverse), or a place
    under a file or without write permission. Missing folders are fine: the writers create them."""
    path = Path(path)
    if folder and path.exists() and not path.is_dir():
        raise OptionError(f"{option} {path} is a file; give a folder")
    if not folder and path.is_dir():
        raise OptionError(f"{option} {path} is a folder; give a file name")
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing != path and not existing.is_dir():
        raise OptionError(f"{option} {path}: {existing} is a file, so nothing can be written under it")
    if not os.access(existing, os.W_OK | (os.X_OK if existing.is_dir() else 0)):
        raise OptionError(f"{option} {path}: {existing} is not writable (permission denied)")


def _close_progress_bars() -> None:
    """End the progress bars an error interrupted, so that its message starts on a line of its own."""
    bars = list(getattr(tqdm, "_instances", ()))
    for bar in bars:
        bar.close()  # a bar that is not left clears its line and returns to its start
    if bars and not sys.stderr.isatty():
        print(file=sys.stderr)  # a log keeps the bar's text: end its line


def _message(error: BaseException) -> str:
    """``error`` as one line: spikeport's own messages whole, other exceptions' first line, with the
    package to install for a missing module and the way to the traceback for anything unexpected."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = " ".join(lines) if isinstance(error, SpikeportError) else (lines[0] if lines else "")
    if isinstance(error, ModuleNotFoundError) and error.name and not error.name.startswith("spikeport"):
        name = error.name.split(".")[0]
        return f"{text} (missing package: {INSTALL_HINTS.get(name, f'pip install {name}')})"
    if isinstance(error, OSError) and error.filename is not None:
        return f"{error.filename}: {error.strerror or text}"
    if isinstance(error, (SpikeportError, ValueError, OSError, RuntimeError, ImportError)):
        return text or type(error).__name__
    return f"{type(error).__name__}: {text} (unexpected: rerun with --debug for the traceback)"


def _run(args: argparse.Namespace) -> None:
    for attribute, option, folder in OUTPUTS[args.command]:
        if getattr(args, attribute) is not None:
            check_output(getattr(args, attribute), option, folder=folder)
    if args.command == "demo":
        demo.run_demo(args.out or demo.default_output(), limit=args.limit, progress=not args.quiet)
    elif args.command == "train":
        _train(args)
    elif args.command == "convert":
        _convert(args)
    elif args.command == "evaluate":
        _evaluate(args)
    elif args.command == "compare":
        _compare(args)
    elif args.command == "fit-fs":
        _fit_fs(args)


def main(argv: list[str] | None = None) -> int:
    """Run one command; every failure is one line on stderr and exit code 2 (``--debug``: the traceback)."""
    try:
        args = _parser().parse_args(argv)
    except UsageError as error:
        print(f"spikeport: error: {error}", file=sys.stderr)
        return 2
    keep_freed_memory()  # this process simulates: reuse freed tensors instead of faulting pages in again
    try:
        init_from_environment()  # under torchrun: one process group, data sharded by batch
        _run(args)
    except KeyboardInterrupt:
        _close_progress_bars()
        if args.debug:
            raise
        print("spikeport: interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        _close_progress_bars()
        if args.debug:
            raise
        print(f"spikeport: error: {_message(error)}", file=sys.stderr)
        return 2
    finally:
        finish()
    return 0


if __name__ == "__main__":
    sys.exit(main())
