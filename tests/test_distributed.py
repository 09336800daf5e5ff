"""torch.distributed: two CPU processes (gloo, loopback) give exactly the single-process results."""

import json
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from helpers import Residual, randomize_batchnorms

import spikeport as sp
import spikeport.distributed  # noqa: F401

METHODS = ("ecc", "percentile", "rmp[current=mean]", "calibrated[timesteps=2]", "fs")


def data():
    g = torch.Generator().manual_seed(0)
    return torch.rand(90, 1, 8, 8, generator=g), torch.randint(0, 5, (90,), generator=g)


def model():
    torch.manual_seed(0)
    return randomize_batchnorms(Residual()).eval()


def run(method: str) -> dict:
    x, y = data()
    snn = sp.convert(model(), x[:60], method, batch_size=16)  # 4 batches: uneven shares
    steps = [2, 8] if snn.coding.name == "temporal" else [1, 4, 16]
    ev = sp.evaluate(snn, (x, y), steps, batch_size=20, progress=False).to_dict()  # 5 batches
    ev["method"].pop("notes", None)  # they say how long calibration took
    return ev


def worker(rank: int, port: int, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        results = {method: run(method) for method in METHODS}
        results["share"] = len(list(sp.distributed.shard(range(5))))  # this process's batches of 5
        shares = [None, None]
        dist.all_gather_object(shares, results["share"])
        results["shares"] = shares
    finally:
        dist.destroy_process_group()
    if rank == 0:
        with open(out, "w") as handle:
            json.dump(results, handle)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not built in")
def test_two_processes_equal_one(tmp_path):
    out = tmp_path / "distributed.json"
    mp.spawn(worker, args=(free_port(), str(out)), nprocs=2, join=True)
    distributed = json.loads(out.read_text())
    assert distributed["shares"] == [3, 2]  # the work really was split
    for method in METHODS:
        alone = json.loads(json.dumps(run(method)))
        assert distributed[method] == alone, method
