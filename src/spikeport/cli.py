"""The `spikeport` command: demo, convert, evaluate."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from spikeport.errors import SpikeportError


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
    parser = argparse.ArgumentParser(
        prog="spikeport", description="Convert ANNs to spiking networks and measure them."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser(
        "demo", help="MNIST end to end: train (cached), convert with rmp/max/percentile, plot"
    )
    demo.add_argument("--out", default="spikeport-demo", help="folder for the plot, table and JSON")
    demo.add_argument(
        "--limit", type=int, default=2000, help="evaluate the first N test images (default 2000; 10000 = all)"
    )
    demo.add_argument("--quiet", action="store_true", help="no progress bars")

    convert = commands.add_parser("convert", help="convert a model into a saved SpikingNetwork")
    convert.add_argument("model", help="a .pt2 file (torch.export) or package.module:factory")
    convert.add_argument("--weights", help="state_dict file for a factory model")
    convert.add_argument("--data", required=True, help="calibration data spec, e.g. mnist:train or npz:FILE")
    convert.add_argument("--method", default="rmp", help="rmp, max or percentile (default rmp)")
    convert.add_argument("--reset", choices=["soft", "hard"])
    convert.add_argument(
        "--initial-potential", type=float, help="membrane at t=0 as a fraction of the threshold"
    )
    convert.add_argument("--channelwise", action="store_true", default=None, help="one threshold per channel")
    convert.add_argument("--alpha", type=float, help="rmp: threshold scale")
    convert.add_argument("--percentile", type=float, help="percentile: which percentile (default 99.9)")
    convert.add_argument(
        "--calibration-timesteps", type=int, help="rmp: steps simulated per calibration pass"
    )
    convert.add_argument("--calibration-samples", type=int, help="use the first N calibration samples")
    convert.add_argument("--encoding", choices=["analog", "poisson"], default="analog")
    convert.add_argument("-o", "--output", required=True, help="where to save the network (.spk)")

    evaluate = commands.add_parser("evaluate", help="accuracy, agreement, spikes, SOPs and energy at each T")
    evaluate.add_argument("network", help="a file written by `spikeport convert`")
    evaluate.add_argument("--data", required=True, help="test data spec, e.g. mnist:test")
    evaluate.add_argument("--timesteps", type=_timesteps, default=[8, 16, 32, 64, 128])
    evaluate.add_argument("--limit", type=int, help="first N samples only")
    evaluate.add_argument("--batch-size", type=int, default=100)
    evaluate.add_argument("--json", help="write the evaluation as JSON")
    evaluate.add_argument("--plot", help="write accuracy-vs-T and accuracy-vs-SOPs as PNG")
    evaluate.add_argument("--quiet", action="store_true")
    return parser


def _convert(args: argparse.Namespace) -> None:
    import spikeport as sp
    from spikeport.frontends.dispatch import load_model

    model = load_model(args.model, args.weights)
    names = ["reset", "initial_potential", "channelwise", "alpha", "percentile", "calibration_timesteps"]
    options = {name: getattr(args, name) for name in names if getattr(args, name) is not None}
    snn = sp.convert(
        model,
        args.data,
        args.method,
        encoding=args.encoding,
        calibration_samples=args.calibration_samples,
        **options,
    )
    path = sp.save(snn, args.output)
    print(f"converted with {args.method} ({len(snn.neurons())} neuron layers); saved to {path}")
    for note in snn.info.get("notes", []):
        print(f"note: {note}")


def _evaluate(args: argparse.Namespace) -> None:
    import spikeport as sp

    snn = sp.load(args.network)
    ev = sp.evaluate(
        snn, args.data, args.timesteps, batch_size=args.batch_size, limit=args.limit, progress=not args.quiet
    )
    print(ev.to_markdown())
    if args.json:
        print(f"JSON: {ev.to_json(args.json)}")
    if args.plot:
        print(f"plot: {ev.plot(args.plot)}")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "demo":
            from spikeport.demo import run_demo

            run_demo(Path(args.out), limit=args.limit, progress=not args.quiet)
        elif args.command == "convert":
            _convert(args)
        elif args.command == "evaluate":
            _evaluate(args)
    except (SpikeportError, ValueError) as error:
        print(f"spikeport: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
