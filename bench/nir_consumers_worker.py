"""Runs NIR files in other tools, inside their own virtual environment (called by bench/nir_consumers.py).

Imports only what the tools need (never spikeport). For each NIR file and each tool: import it, run it for
the given steps on the given input (the same analog input at every step) and save the output of the
network's last layer at every step, [T, B, ...]; or the error. Then the reverse direction: each tool builds a
small IF network of its own (Linear, IF, Linear), exports it to NIR, and saves the file, its input and its
own outputs per step, for spikeport to import and compare.
Run: <venv>/bin/python bench/nir_consumers_worker.py --files A.nir,B.nir --input x.npy --steps 32 --out DIR
"""

from __future__ import annotations

import argparse
import json
import traceback
from pathlib import Path

import nir
import numpy as np
import torch


def _first(out):
    return out[0] if isinstance(out, tuple) else out


def run_norse(graph, x: torch.Tensor, steps: int) -> np.ndarray:
    from norse.torch import from_nir

    module, state, outputs = from_nir(graph), None, []
    for _ in range(steps):
        out, state = module(x, state)
        outputs.append(out)
    return torch.stack(outputs).detach().numpy()


def run_sinabs(graph, x: torch.Tensor, steps: int) -> np.ndarray:
    import sinabs

    module = sinabs.from_nir(graph, batch_size=x.shape[0], num_timesteps=steps)
    sequence = x.unsqueeze(1).expand(x.shape[0], steps, *x.shape[1:]).reshape(-1, *x.shape[1:])
    out = _first(module(sequence))
    return out.reshape(x.shape[0], steps, *out.shape[1:]).transpose(0, 1).detach().numpy()


def run_snntorch(graph, x: torch.Tensor, steps: int) -> np.ndarray:
    from snntorch.import_nir import import_from_nir

    module, outputs = import_from_nir(graph), []
    state = None
    for _ in range(steps):
        try:
            out = module(x) if state is None else module(x, state)
        except TypeError:
            out = module(x, state)
        if isinstance(out, tuple):
            out, state = out[0], out[1]
        outputs.append(out)
    return torch.stack(outputs).detach().numpy()


def run_rockpool(graph, x: torch.Tensor, steps: int) -> np.ndarray:
    from rockpool.nn.modules import from_nir

    module = from_nir(graph)
    out = _first(module(x.unsqueeze(1).expand(x.shape[0], steps, *x.shape[1:])))
    return out.transpose(0, 1).detach().numpy()


RUNNERS = {"norse": run_norse, "sinabs": run_sinabs, "snntorch": run_snntorch, "rockpool": run_rockpool}


def exported_by_each_tool(out: Path, steps: int) -> dict:
    """Each tool's own Linear-IF-Linear network: its NIR file, input and outputs per step."""
    torch.manual_seed(0)
    first, second = torch.nn.Linear(6, 8), torch.nn.Linear(8, 3)
    x = torch.rand(4, 6) * 2
    np.save(out / "tool-input.npy", x.numpy())
    results = {}

    def norse_net():
        from norse.torch import IAFCell, SequentialState, to_nir

        net = SequentialState(first, IAFCell(), second)
        state, outputs = None, []
        for _ in range(steps):
            y, state = net(x, state)
            outputs.append(y)
        return to_nir(net, x), torch.stack(outputs)

    def sinabs_net():
        import sinabs
        import sinabs.layers as sl

        net = torch.nn.Sequential(first, sl.IAFSqueeze(batch_size=x.shape[0]), second)
        sequence = x.unsqueeze(1).expand(x.shape[0], steps, 6).reshape(-1, 6)
        y = net(sequence).reshape(x.shape[0], steps, 3).transpose(0, 1)
        sinabs.reset_states(net)
        return sinabs.to_nir(net, sequence), y

    def snntorch_net():
        import snntorch
        import snntorch.utils
        from snntorch.export_nir import export_to_nir

        neuron = snntorch.Leaky(beta=1.0, init_hidden=True, reset_mechanism="zero")
        net = torch.nn.Sequential(first, neuron, second)
        snntorch.utils.reset(net)
        outputs = [net(x) for _ in range(steps)]
        return export_to_nir(net, x), torch.stack(outputs)

    def rockpool_net():
        from rockpool.nn.combinators import Sequential
        from rockpool.nn.modules import LIFTorch, LinearTorch
        from rockpool.nn.modules.torch.nir import to_nir

        net = Sequential(
            LinearTorch((6, 8), has_bias=False), LIFTorch(8), LinearTorch((8, 3), has_bias=False)
        )
        y = _first(net(x.unsqueeze(1).expand(4, steps, 6)))
        return to_nir(net), y.transpose(0, 1)

    for tool, build in {
        "norse": norse_net,
        "sinabs": sinabs_net,
        "snntorch": snntorch_net,
        "rockpool": rockpool_net,
    }.items():
        try:
            with torch.no_grad():
                graph, outputs = build()
            path = out / f"from-{tool}.nir"
            nir.write(str(path), graph)
            np.save(out / f"from-{tool}-outputs.npy", outputs.detach().numpy())
            results[tool] = {
                "file": str(path),
                "nodes": sorted({type(n).__name__ for n in graph.nodes.values()}),
            }
        except Exception as error:  # a tool that cannot export this network: say so
            results[tool] = {"error": f"{type(error).__name__}: {error}".splitlines()[0][:300]}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", required=True)
    parser.add_argument("--input", required=True)
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    out = Path(args.out)
    x = torch.from_numpy(np.load(args.input))
    report: dict = {"nir": nir.__version__, "imports": {}, "exports": {}}
    for file in args.files.split(","):
        try:
            graph = nir.read(file)
        except Exception as error:  # this nir version cannot read the file
            report["imports"][f"{Path(file).stem}:nir.read"] = {
                "error": f"{type(error).__name__}: {error}"[:300]
            }
            continue
        for tool, run in RUNNERS.items():
            key = f"{Path(file).stem}:{tool}"
            try:
                with torch.no_grad():
                    outputs = run(graph, x, args.steps)
                np.save(out / f"{Path(file).stem}-{tool}.npy", outputs)
                report["imports"][key] = {"shape": list(outputs.shape)}
            except Exception as error:
                last = traceback.format_exception_only(type(error), error)[-1].strip()
                report["imports"][key] = {"error": last.splitlines()[0][:300]}
    report["exports"] = exported_by_each_tool(out, args.steps)
    (out / "worker.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
