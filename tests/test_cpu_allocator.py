"""sp.keep_freed_memory: applies on glibc, and leaves a user's own allocator settings alone."""

import platform

import spikeport as sp


def test_applies_on_glibc(monkeypatch):
    for name in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "LD_PRELOAD"):
        monkeypatch.delenv(name, raising=False)
    assert sp.keep_freed_memory() == (platform.libc_ver()[0] == "glibc")


def test_a_users_choice_wins(monkeypatch):
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "131072")
    assert sp.keep_freed_memory() is False
