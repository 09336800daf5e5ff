import pytest
import torch
from hypothesis import settings

settings.register_profile("ci", max_examples=25, deadline=None, derandomize=True, print_blob=True)
settings.load_profile("ci")


@pytest.fixture(autouse=True)
def _seed_and_cache(tmp_path_factory, monkeypatch):
    torch.manual_seed(0)
    monkeypatch.setenv("SPIKEPORT_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
