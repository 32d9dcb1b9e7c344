"""Start-up time of the command line: `advcli --help`, `--version` and a usage error, each the median
of several runs, with the OS file cache warm and cold.

Cold runs first evict from the page cache every file the command reads (its Python modules, their
compiled forms, the shared libraries it maps and the interpreter itself), found by running it once
with a recorder, through ``posix_fadvise(DONTNEED)``: no root needed, nothing else on the machine
is dropped. Each run also reports whether torch was imported.

    PYTHONPATH=. python benchmarks/startup.py --runs 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

COMMANDS = {"--help": ["--help"], "--version": ["--version"], "usage error": ["train", "--batch-size", "0"]}

RECORDER = """
import atexit, importlib.util, json, os, sys
def record():
    files = {sys.executable, os.path.realpath(sys.executable)}
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if path:
            files.add(path)
            try:
                files.add(importlib.util.cache_from_source(path))
            except (NotImplementedError, ValueError):
                pass
    with open("/proc/self/maps") as maps:
        files |= {line.split(None, 5)[5].strip() for line in maps if len(line.split(None, 5)) == 6}
    for folder in sys.path:
        if os.path.isdir(folder):
            files |= {os.path.join(folder, name) for name in os.listdir(folder) if name.endswith(".pth")}
    json.dump({"files": sorted(f for f in files if os.path.isfile(f)), "torch": "torch" in sys.modules},
              open(os.environ["ADVCLI_STARTUP_RECORD"], "w"))
atexit.register(record)
sys.argv = ["advcli", *sys.argv[1:]]
from advcli.cli.main import run
run()
"""


def read_files(args: list[str], record: Path) -> dict:
    env = {**os.environ, "ADVCLI_STARTUP_RECORD": str(record)}
    subprocess.run([sys.executable, "-c", RECORDER, *args], env=env, capture_output=True, check=False)
    return json.loads(record.read_text())


def evict(files: list[str]) -> None:
    for path in files:
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def once(args: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "advcli", *args], capture_output=True, check=False)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    options = parser.parse_args()
    results = {}
    record = Path(os.environ.get("TMPDIR", "/tmp")) / f"advcli-startup-{os.getpid()}.json"
    for name, args in COMMANDS.items():
        seen = read_files(args, record)
        once(args)  # warm the cache
        warm = [once(args) for _ in range(options.runs)]
        cold = []
        for _ in range(options.runs):
            evict(seen["files"])
            cold.append(once(args))
        results[name] = {"warm_median_s": round(statistics.median(warm), 3), "cold_median_s":
                         round(statistics.median(cold), 3), "warm_s": [round(t, 3) for t in warm],
                         "cold_s": [round(t, 3) for t in cold], "files_read": len(seen["files"]),
                         "imports_torch": seen["torch"]}
        print(f"{name:12} warm {results[name]['warm_median_s']:.3f} s  cold {results[name]['cold_median_s']:.3f} s  "
              f"({len(seen['files'])} files, torch imported: {seen['torch']})", flush=True)
    record.unlink(missing_ok=True)
    if options.json:
        options.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
