"""Downloads of mnist, fashion-mnist and cifar10 into the cache, against a local HTTP server only.

Every test serves small files it makes (tiny IDX .gz files, a tiny CIFAR tar.gz of pickled numpy
batches) from 127.0.0.1 and swaps them into the registry with their own sizes and checksums; the
real hosts are never contacted.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import http.server
import io
import json
import os
import pickle
import struct
import tarfile
import threading
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import pytest

import advcli
from advcli.data import download as downloads
from advcli.errors import DataError

IDX_NAMES = {"train-images-idx3-ubyte.gz": (0x803, (30, 28, 28)), "train-labels-idx1-ubyte.gz": (0x801, (30,)),
             "t10k-images-idx3-ubyte.gz": (0x803, (10, 28, 28)), "t10k-labels-idx1-ubyte.gz": (0x801, (10,))}
CIFAR_FOLDER = "cifar-10-batches-py"


# Files the tests serve -----------------------------------------------------------------------


def idx_gz(magic: int, shape: tuple[int, ...], seed: int) -> bytes:
    """A gzipped IDX file of random uint8 values (labels stay in 0..9)."""
    high = 256 if len(shape) == 3 else 10
    values = np.random.default_rng(seed).integers(0, high, shape, dtype=np.uint8)
    payload = struct.pack(">I", magic) + struct.pack(f">{len(shape)}I", *shape) + values.tobytes()
    return gzip.compress(payload, mtime=0)


def cifar_batch(seed: int, count: int = 4) -> bytes:
    """One CIFAR batch as the python release stores it: a protocol-2 pickled dict of numpy data."""
    rng = np.random.default_rng(seed)
    batch = {b"data": rng.integers(0, 256, (count, 3072), dtype=np.uint8),
             b"labels": [int(v) for v in rng.integers(0, 10, count)]}
    return pickle.dumps(batch, protocol=2)


def tar_gz(entries: list[tuple[str, Optional[bytes], str]]) -> bytes:
    """A tar.gz of (name, content, kind) entries; kind is "file", "dir" or "symlink" (content: target)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, content, kind in entries:
            info = tarfile.TarInfo(name)
            if kind == "dir":
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, content.decode()
                tar.addfile(info)
            else:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def cifar_archive(extra: Optional[list[tuple[str, Optional[bytes], str]]] = None) -> bytes:
    entries = [(CIFAR_FOLDER, None, "dir")]
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    entries += [(f"{CIFAR_FOLDER}/{name}", cifar_batch(seed), "file") for seed, name in enumerate(names)]
    meta = pickle.dumps({b"label_names": [f"class{i}".encode() for i in range(10)]}, protocol=2)
    entries.append((f"{CIFAR_FOLDER}/batches.meta", meta, "file"))
    return tar_gz(entries + (extra or []))


def payloads(name: str) -> dict[str, bytes]:
    """What the test server holds for one dataset, by file name."""
    if name == "cifar10":
        return {"cifar-10-python.tar.gz": cifar_archive()}
    seed = 0 if name == "mnist" else 100
    return {file: idx_gz(magic, shape, seed + i) for i, (file, (magic, shape)) in enumerate(IDX_NAMES.items())}


def remote_files(files: dict[str, bytes]) -> tuple[downloads.RemoteFile, ...]:
    return tuple(downloads.RemoteFile(n, len(b), hashlib.sha256(b).hexdigest()) for n, b in files.items())


# A local HTTP server ---------------------------------------------------------------------------


class Server:
    """Serves `routes` (URL path -> bytes) on 127.0.0.1; `mangle` rewrites a response's body and
    announced length, `cut` sends only that many bytes of the body before closing."""

    def __init__(self) -> None:
        self.routes: dict[str, bytes] = {}
        self.mangle: Optional[Callable[[bytes], tuple[bytes, Optional[int]]]] = None
        self.cut: Optional[int] = None
        self.requests: list[str] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the http.server API)
                server.requests.append(self.path)
                body = server.routes.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                length: Optional[int] = len(body)
                if server.mangle is not None:
                    body, length = server.mangle(body)
                self.send_response(200)
                if length is not None:
                    self.send_header("Content-Length", str(length))
                self.end_headers()
                self.wfile.write(body if server.cut is None else body[: server.cut])
                self.close_connection = True

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def server():
    running = Server()
    yield running
    running.stop()


def serve(server: Server, name: str, monkeypatch, files: Optional[dict[str, bytes]] = None) -> downloads.RemoteDataset:
    """Put a dataset's files on the server and in the registry; the mirror variable points at the server."""
    files = payloads(name) if files is None else files
    for file, body in files.items():
        server.routes[f"/{name}/{file}"] = body
    source = dataclasses.replace(downloads.SOURCES[name], files=remote_files(files))
    monkeypatch.setitem(downloads.SOURCES, name, source)
    monkeypatch.setenv(downloads.MIRROR_ENV, server.url)
    return source


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("ADVCLI_CACHE_DIR", str(folder))
    return folder


def cache_entries(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.iterdir()) if cache.exists() else []


# Tests -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(downloads.SOURCES))
def test_downloads_once_then_loads_offline(server, cache, monkeypatch, name):
    serve(server, name, monkeypatch)
    first = advcli.load_dataset(name)
    assert first.spec == name and first.name == name
    assert first.x_train.shape[1:] == ((3, 32, 32) if name == "cifar10" else (1, 28, 28))
    assert (cache / name / downloads.MANIFEST).is_file()
    served = len(server.requests)
    assert served == len(downloads.SOURCES[name].files)
    server.stop()
    second = advcli.load_dataset(name)
    assert second.fingerprint == first.fingerprint
    assert len(server.requests) == served


def test_downloaded_mnist_holds_the_served_arrays(server, cache, monkeypatch):
    files = payloads("mnist")
    serve(server, "mnist", monkeypatch, files)
    dataset = advcli.load_dataset("mnist")
    labels = np.frombuffer(gzip.decompress(files["t10k-labels-idx1-ubyte.gz"]), dtype=np.uint8, offset=8)
    images = np.frombuffer(gzip.decompress(files["t10k-images-idx3-ubyte.gz"]), dtype=np.uint8, offset=16)
    assert np.array_equal(dataset.y_test.numpy(), labels)
    assert np.array_equal(np.rint(dataset.x_test.numpy().ravel() * 255).astype(np.uint8), images)


def test_checksum_mismatch_is_refused_and_nothing_cached(server, cache, monkeypatch):
    serve(server, "mnist", monkeypatch)
    server.mangle = lambda body: (bytes([body[0] ^ 1]) + body[1:], len(body))  # same size, one bit off
    with pytest.raises(DataError, match="SHA-256 mismatch") as error:
        advcli.load_dataset("mnist")
    assert "nothing was cached" in str(error.value) and "\n" not in str(error.value)
    assert cache_entries(cache) == []


@pytest.mark.parametrize("how, message", [
    ("truncated", "truncated"),
    ("announced larger", r"announces \d+ bytes, expected \d+"),
    ("unannounced larger", "larger than the expected"),
])
def test_wrong_sized_response_is_refused(server, cache, monkeypatch, how, message):
    serve(server, "mnist", monkeypatch)
    if how == "truncated":
        server.cut = 10  # announces the full length, sends 10 bytes, hangs up
    elif how == "announced larger":
        server.mangle = lambda body: (body + b"x" * 64, len(body) + 64)
    else:
        server.mangle = lambda body: (body + b"x" * 64, None)
    with pytest.raises(DataError, match=message):
        advcli.load_dataset("mnist")
    assert cache_entries(cache) == []


def test_server_down_gives_one_line_naming_the_url_and_the_local_option(server, cache, monkeypatch):
    serve(server, "fashion-mnist", monkeypatch)
    server.stop()
    with pytest.raises(DataError) as error:
        advcli.load_dataset("fashion-mnist")
    message = str(error.value)
    assert "\n" not in message
    assert f"{server.url}/fashion-mnist/train-images-idx3-ubyte.gz" in message
    assert "fashion-mnist:DIR" in message and downloads.MIRROR_ENV in message
    assert error.value.param == "data"
    assert cache_entries(cache) == []


def test_the_command_line_names_its_flag_and_exits_2_when_the_server_is_down(server, cache, monkeypatch):
    from typer.testing import CliRunner

    from advcli.cli import app

    serve(server, "mnist", monkeypatch)
    server.stop()
    result = CliRunner().invoke(app, ["train", "--data", "mnist", "--epochs", "1", "--out", str(cache / "run")])
    assert result.exit_code == 2
    (line,) = [line for line in result.output.splitlines() if line.strip()]
    assert "pass --data mnist:DIR" in line and "Traceback" not in result.output


def test_next_mirror_is_tried_and_recorded(server, cache, monkeypatch):
    source = serve(server, "mnist", monkeypatch)
    dead = Server()
    dead.stop()
    missing = f"{server.url}/nowhere/"
    folder = downloads.fetch(source, cache_dir=cache, base_urls=(dead.url + "/mnist/", missing, server.url + "/mnist/"))
    manifest = json.loads((folder / downloads.MANIFEST).read_text())
    assert {entry["url"] for entry in manifest["files"].values()} == {f"{server.url}/mnist/{f.name}" for f in source.files}
    assert f"/nowhere/{source.files[0].name}" in server.requests


def test_file_mirror_serves_air_gapped_users(tmp_path, cache, monkeypatch):
    files = payloads("mnist")
    (tmp_path / "mirror" / "mnist").mkdir(parents=True)
    for name, body in files.items():
        (tmp_path / "mirror" / "mnist" / name).write_bytes(body)
    monkeypatch.setitem(downloads.SOURCES, "mnist", dataclasses.replace(downloads.SOURCES["mnist"],
                                                                          files=remote_files(files)))
    monkeypatch.setenv(downloads.MIRROR_ENV, (tmp_path / "mirror").as_uri())
    assert advcli.load_dataset("mnist").x_test.shape[0] == 10


def test_progress_counts_bytes_up_to_each_file_size(server, cache, monkeypatch):
    source = serve(server, "cifar10", monkeypatch)
    calls: list[tuple[str, int, int]] = []
    advcli.load_dataset("cifar10", on_progress=lambda *call: calls.append(call))
    size = source.files[0].size
    download = [c for c in calls if c[0] == "download cifar-10-python.tar.gz"]
    assert download[-1] == ("download cifar-10-python.tar.gz", size, size)
    assert [done for _, done, _ in download] == sorted(done for _, done, _ in download)
    assert calls[-1] == ("extract cifar-10-python.tar.gz", 7, 7)


def test_a_damaged_cache_is_downloaded_again(server, cache, monkeypatch):
    serve(server, "mnist", monkeypatch)
    advcli.load_dataset("mnist")
    damaged = cache / "mnist" / "t10k-labels-idx1-ubyte.gz"
    damaged.write_bytes(damaged.read_bytes()[:-3])
    advcli.load_dataset("mnist")
    assert len(server.requests) == 8
    assert downloads.cached_dataset("mnist", cache_dir=cache) == cache / "mnist"


def test_a_foreign_folder_in_the_cache_is_left_alone(server, cache, monkeypatch):
    serve(server, "mnist", monkeypatch)
    (cache / "mnist").mkdir(parents=True)
    (cache / "mnist" / "mine.txt").write_text("user data")
    with pytest.raises(DataError, match="not an advcli download"):
        advcli.load_dataset("mnist")
    assert (cache / "mnist" / "mine.txt").read_text() == "user data"


@pytest.mark.parametrize("entry, message", [
    (("../evil", b"x", "file"), "outside"),
    (("/tmp/evil", b"x", "file"), "outside"),
    ((f"{CIFAR_FOLDER}/../../evil", b"x", "file"), "outside"),
    ((f"{CIFAR_FOLDER}/data_batch_6", b"x", "file"), "unexpected member"),
    ((f"{CIFAR_FOLDER}/readme.html", b"/etc/passwd", "symlink"), "not a regular file"),
    ((f"{CIFAR_FOLDER}/data_batch_1", b"again", "file"), "appears twice"),
])
def test_hostile_archive_members_are_refused(server, cache, tmp_path, monkeypatch, entry, message):
    serve(server, "cifar10", monkeypatch, files={"cifar-10-python.tar.gz": cifar_archive([entry])})
    with pytest.raises(DataError, match=message):
        advcli.load_dataset("cifar10")
    assert cache_entries(cache) == []
    assert not (tmp_path / "evil").exists() and not (cache.parent / "evil").exists()


def test_archive_size_bounds_are_enforced(server, cache, monkeypatch):
    source = serve(server, "cifar10", monkeypatch)
    small = dataclasses.replace(source.archive, max_member_bytes=1000)
    with pytest.raises(DataError, match="more than the 1000 allowed"):
        downloads.fetch(dataclasses.replace(source, archive=small), cache_dir=cache)
    total = dataclasses.replace(source.archive, max_total_bytes=20000)
    with pytest.raises(DataError, match="add up to more than 20000"):
        downloads.fetch(dataclasses.replace(source, archive=total), cache_dir=cache)
    assert cache_entries(cache) == []


def test_a_pickle_that_runs_code_is_never_run(server, cache, monkeypatch, tmp_path):
    marker = tmp_path / "ran"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    entries = [(CIFAR_FOLDER, None, "dir")]
    entries += [(f"{CIFAR_FOLDER}/data_batch_{i}", cifar_batch(i), "file") for i in range(1, 6)]
    entries += [(f"{CIFAR_FOLDER}/test_batch", pickle.dumps({b"data": Exploit()}, protocol=2), "file"),
                (f"{CIFAR_FOLDER}/batches.meta", pickle.dumps({b"label_names": []}, protocol=2), "file")]
    hostile = tar_gz(entries)
    serve(server, "cifar10", monkeypatch, files={"cifar-10-python.tar.gz": hostile})
    with pytest.raises(DataError, match="refusing to unpickle"):
        advcli.load_dataset("cifar10")
    assert not marker.exists()


def test_unsupported_scheme_is_refused(cache, monkeypatch):
    monkeypatch.setenv(downloads.MIRROR_ENV, "ftp://mirror.example")
    with pytest.raises(DataError, match="unsupported URL scheme 'ftp'"):
        advcli.load_dataset("mnist")


def test_canonical_registry_is_complete():
    """Every downloadable format has a loader, https or http hosts, and full SHA-256 digests."""
    from advcli.data import FORMATS

    for name, source in downloads.SOURCES.items():
        assert name in FORMATS and source.base_urls
        assert all(url.startswith(("https://", "http://")) and url.endswith("/") for url in source.base_urls)
        for file in source.files:
            assert len(file.sha256) == 64 and int(file.sha256, 16) >= 0 and file.size > 0
