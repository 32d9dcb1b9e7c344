"""The allocator setting of the command: what it does, when it stays out of the way."""

from __future__ import annotations

import platform

import pytest

from advcli.runtime.memory import keep_freed_memory


@pytest.mark.parametrize("environ", [
    {"ADVCLI_KEEP_FREED_MEMORY": "0"},
    {"MALLOC_TRIM_THRESHOLD_": "131072"},
    {"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=131072"},
    {"LD_PRELOAD": "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"},
])
def test_keep_freed_memory_defers_to_the_environment(environ):
    assert keep_freed_memory(environ) is None


def test_keep_freed_memory_tunes_glibc():
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        assert keep_freed_memory({}) is None
    else:
        assert "glibc keeps up to 256 MiB of freed memory" in keep_freed_memory({})


def test_the_command_keeps_freed_memory(monkeypatch):
    import sys

    import advcli.cli.main as cli
    import advcli.runtime.memory as memory
    calls = []
    monkeypatch.setattr(memory, "keep_freed_memory", lambda: calls.append(True))
    monkeypatch.setattr(sys, "argv", ["advcli", "--version"])
    with pytest.raises(SystemExit) as stopped:
        cli.run()
    assert stopped.value.code == 0 and calls == [True]
