"""Download MNIST, Fashion-MNIST and CIFAR-10 once into advcli's cache, verified, and reuse them offline.

Each dataset is fetched from its canonical hosts (or from a mirror named by ``$ADVCLI_DATA_MIRROR``),
checked byte for byte against a published SHA-256 and size, and moved into
``<cache>/<dataset>/`` in one rename, with a manifest; a later load finds the manifest and never
touches the network. A failed, refused or interrupted download leaves nothing in the cache. The
CIFAR-10 archive is unpacked here (regular files with expected names only, sizes bounded); its
pickled batches are read later by the loader's restricted unpickler, never by ``pickle.load``.

Where each checksum comes from:

- MNIST: SHA-256 and sizes from tensorflow-datasets' ``url_checksums/mnist.txt``; mirrors as in
  torchvision's ``datasets/mnist.py`` (which checks the same files by MD5) and TFDS.
- Fashion-MNIST: SHA-256 and sizes from tensorflow-datasets' ``url_checksums/fashion_mnist.txt``;
  the same SHA-256 in Keras' ``datasets/fashion_mnist.py``, whose host is the second mirror.
- CIFAR-10: SHA-256 from Keras' ``datasets/cifar10.py`` (``file_hash``); size 170,498,071 bytes as
  the host's Content-Length reports it.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
import socket
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable, Optional, Sequence

from .._version import __version__
from ..errors import DataError

__all__ = ["MIRROR_ENV", "SOURCES", "Archive", "RemoteDataset", "RemoteFile", "cached_dataset",
           "download_file", "extract_archive", "fetch", "fetch_dataset", "downloaded_folder"]

#: Base URL of a mirror holding ``<dataset>/<file>`` (http, https or file); replaces the canonical hosts.
MIRROR_ENV = "ADVCLI_DATA_MIRROR"
MANIFEST = "advcli-download.json"
MANIFEST_FORMAT = "advcli-download"
TIMEOUT_S = 30.0
CHUNK_BYTES = 1 << 20
SCHEMES = ("http", "https", "file")

#: ``on_progress(stage, done, total)``: bytes while downloading, archive members while extracting.
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class RemoteFile:
    """One published file: its name on the host, exact size in bytes and SHA-256 (hex)."""

    name: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Archive:
    """How to unpack a tar.gz download: its one folder, the file names it may and must hold, size bounds."""

    folder: str
    members: frozenset[str]
    required: frozenset[str]
    max_member_bytes: int
    max_total_bytes: int


@dataclass(frozen=True)
class RemoteDataset:
    """A downloadable dataset: base URLs tried in order (a file's URL is base + name) and its files."""

    name: str
    base_urls: tuple[str, ...]
    files: tuple[RemoteFile, ...]
    archive: Optional[Archive] = None


def _idx_files(sizes_and_hashes: dict[str, tuple[int, str]]) -> tuple[RemoteFile, ...]:
    return tuple(RemoteFile(name, size, sha) for name, (size, sha) in sizes_and_hashes.items())


_CIFAR_BATCHES = frozenset({"batches.meta", "test_batch"} | {f"data_batch_{i}" for i in range(1, 6)})

SOURCES: dict[str, RemoteDataset] = {
    "mnist": RemoteDataset(
        "mnist",
        ("https://ossci-datasets.s3.amazonaws.com/mnist/",
         "https://storage.googleapis.com/cvdf-datasets/mnist/",
         "http://yann.lecun.com/exdb/mnist/"),
        _idx_files({
            "train-images-idx3-ubyte.gz": (9912422, "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
            "train-labels-idx1-ubyte.gz": (28881, "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"),
            "t10k-images-idx3-ubyte.gz": (1648877, "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
            "t10k-labels-idx1-ubyte.gz": (4542, "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
        }),
    ),
    "fashion-mnist": RemoteDataset(
        "fashion-mnist",
        ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
         "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"),
        _idx_files({
            "train-images-idx3-ubyte.gz": (26421880, "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84"),
            "train-labels-idx1-ubyte.gz": (29515, "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845"),
            "t10k-images-idx3-ubyte.gz": (4422102, "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073"),
            "t10k-labels-idx1-ubyte.gz": (5148, "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5"),
        }),
    ),
    "cifar10": RemoteDataset(
        "cifar10",
        ("https://www.cs.toronto.edu/~kriz/",),
        (RemoteFile("cifar-10-python.tar.gz", 170498071,
                    "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"),),
        Archive(
            folder="cifar-10-batches-py",
            members=frozenset(_CIFAR_BATCHES | {"readme.html"}),
            required=_CIFAR_BATCHES,
            max_member_bytes=64 << 20,    # each batch is about 31 MB
            max_total_bytes=256 << 20,    # the eight files add up to about 186 MB
        ),
    ),
}


class _Refused(DataError):
    """A response that arrived but is not the published file (wrong size or checksum)."""


# Downloading one file --------------------------------------------------------------------------


def _open(url: str) -> tuple[object, Optional[int]]:
    """An open response for `url` and the size it announces (None when it announces none)."""
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme not in SCHEMES:
        raise DataError(f"{url}: unsupported URL scheme {scheme!r}; use one of: {', '.join(SCHEMES)}")
    request = urllib.request.Request(url, headers={"User-Agent": f"advcli/{__version__}"})
    response = urllib.request.urlopen(request, timeout=TIMEOUT_S)
    length = response.headers.get("Content-Length")
    return response, int(length) if length is not None and length.strip().isdigit() else None


def download_file(url: str, dest: Path, expected: RemoteFile, *, on_progress: Optional[Progress] = None) -> None:
    """Stream `url` into `dest` (temp file + rename), refusing any response that is not `expected`.

    Reads at most one byte more than the expected size, so an oversized response is cut off, not
    stored. Raises :class:`DataError` for a wrong size or checksum and lets network errors through
    (``OSError``, ``http.client.HTTPException``), so the caller can try the next mirror.
    """
    response, announced = _open(url)
    if announced is not None and announced != expected.size:
        response.close()
        raise _Refused(f"{url}: announces {announced} bytes, expected {expected.size}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    digest, done, stage = hashlib.sha256(), 0, f"download {expected.name}"
    try:
        with os.fdopen(fd, "wb") as out, response:
            while done <= expected.size:
                chunk = response.read(min(CHUNK_BYTES, expected.size + 1 - done))
                if not chunk:
                    break
                done += len(chunk)
                if done > expected.size:
                    raise _Refused(f"{url}: response is larger than the expected {expected.size} bytes")
                digest.update(chunk)
                out.write(chunk)
                if on_progress is not None:
                    on_progress(stage, done, expected.size)
        if done < expected.size:
            raise _Refused(f"{url}: truncated: {done} of {expected.size} bytes arrived")
        if digest.hexdigest() != expected.sha256:
            raise _Refused(f"{url}: SHA-256 mismatch: got {digest.hexdigest()}, expected {expected.sha256}")
        os.replace(tmp, dest)
    except http.client.IncompleteRead as error:
        raise _Refused(f"{url}: truncated: {done + len(error.partial)} of {expected.size} bytes arrived") from None
    finally:
        Path(tmp).unlink(missing_ok=True)


def _network_reason(error: BaseException) -> str:
    """A short reason for a failed request: the HTTP status, or what the socket said."""
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code} {error.reason}"
    if isinstance(error, urllib.error.URLError):
        reason = error.reason
        return getattr(reason, "strerror", None) or str(reason)
    if isinstance(error, (socket.timeout, TimeoutError)):
        return f"no answer within {TIMEOUT_S:g} s"
    return getattr(error, "strerror", None) or str(error) or type(error).__name__


def _fetch_file(source: RemoteDataset, file: RemoteFile, dest: Path, base_urls: Sequence[str],
                on_progress: Optional[Progress]) -> str:
    """Download `file` from the first base URL that serves it correctly; returns that URL."""
    refusals: list[str] = []
    failures: list[str] = []
    for base in base_urls:
        url = base.rstrip("/") + "/" + file.name
        try:
            download_file(url, dest, file, on_progress=on_progress)
            return url
        except _Refused as refusal:
            refusals.append(str(refusal))
        except (OSError, http.client.HTTPException, ValueError) as error:
            failures.append(f"cannot download {url}: {_network_reason(error)}")
    others = len(base_urls) - 1
    tried = f" ({others} other mirror{'s' if others != 1 else ''} tried)" if others else ""
    if refusals:  # a host answered with the wrong bytes: say so before any network trouble
        raise DataError(f"{source.name}: refusing {refusals[0]}{tried}; nothing was cached")
    raise DataError(f"{source.name}: {failures[0]}{tried}; without a network, download the files yourself "
                    f"and pass `data` {source.name}:DIR, or set {MIRROR_ENV} to a mirror", param="data")


# Unpacking an archive --------------------------------------------------------------------------


def _member_name(archive: Archive, member: tarfile.TarInfo, where: Path) -> Optional[str]:
    """The file name a member extracts to (None for the archive's own folder), or DataError."""
    path = PurePosixPath(member.name)
    parts = [part for part in path.parts if part not in ("", ".")]
    if path.is_absolute() or ".." in parts or "\\" in member.name:
        raise DataError(f"{where}: refusing member {member.name!r}: it points outside the archive's folder")
    if parts == [archive.folder] and member.isdir():
        return None
    if len(parts) != 2 or parts[0] != archive.folder or parts[1] not in archive.members:
        raise DataError(f"{where}: refusing unexpected member {member.name!r}")
    if not member.isfile():
        raise DataError(f"{where}: refusing member {member.name!r}: not a regular file (link or device)")
    if member.size > archive.max_member_bytes:
        raise DataError(f"{where}: refusing member {member.name!r}: {member.size} bytes, "
                        f"more than the {archive.max_member_bytes} allowed")
    return parts[1]


def extract_archive(path: Path, dest: Path, archive: Archive, *, on_progress: Optional[Progress] = None) -> Path:
    """Unpack the tar.gz at `path` into ``dest/<archive.folder>``: expected regular files only, sizes bounded.

    Nothing is executed or unpickled; links, devices, absolute or ``..`` paths and unknown names
    are refused with :class:`DataError`. Returns the folder written.
    """
    target = dest / archive.folder
    target.mkdir(parents=True, exist_ok=True)
    total, seen = 0, 0
    stage = f"extract {path.name}"
    try:
        with tarfile.open(path, "r:gz") as tar:
            for member in tar:
                name = _member_name(archive, member, path)
                if name is None:
                    continue
                total += member.size
                if total > archive.max_total_bytes:
                    raise DataError(f"{path}: refusing archive: members add up to more than "
                                    f"{archive.max_total_bytes} bytes")
                source = tar.extractfile(member)
                if source is None:
                    raise DataError(f"{path}: member {member.name!r} has no data")
                with source, open(target / name, "xb") as out:
                    shutil.copyfileobj(source, out, CHUNK_BYTES)
                seen += 1
                if on_progress is not None:
                    on_progress(stage, seen, len(archive.members))
    except FileExistsError as error:
        raise DataError(f"{path}: refusing archive: member {Path(error.filename).name!r} appears twice") from None
    except (tarfile.TarError, EOFError, OSError) as error:
        raise DataError(f"{path}: cannot unpack: {error}") from None
    missing = sorted(archive.required - {p.name for p in target.iterdir()})
    if missing:
        raise DataError(f"{path}: archive lacks {', '.join(missing)}")
    if on_progress is not None:
        on_progress(stage, seen, seen)
    return target


# The cache -------------------------------------------------------------------------------------


def _read_manifest(folder: Path) -> Optional[dict]:
    """The folder's manifest when every file it lists is present at its recorded size, else None."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        return None
    sizes = manifest.get("sizes")
    if not isinstance(sizes, dict) or not sizes:
        return None
    for relative, size in sizes.items():
        path = folder / relative
        if ".." in PurePosixPath(relative).parts or not path.is_file() or path.stat().st_size != size:
            return None
    return manifest


def cached_dataset(name: str, *, cache_dir: Path) -> Optional[Path]:
    """``<cache_dir>/<name>`` when a complete verified download is there, else None (no network use)."""
    folder = Path(cache_dir).expanduser() / name
    return folder if _read_manifest(folder) is not None else None


def _sizes(folder: Path) -> dict[str, int]:
    return {p.relative_to(folder).as_posix(): p.stat().st_size
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != MANIFEST}


def _install(staging: Path, final: Path) -> Path:
    """Move the finished staging folder to `final` in one rename; a stale download is replaced."""
    if final.exists():
        if _read_manifest(final) is not None:  # another process finished first: keep theirs
            return final
        if not (final / MANIFEST).exists():
            raise DataError(f"{final} exists but is not an advcli download; remove it, or pass its "
                            f"files as {final.name}:DIR")
        stale = Path(tempfile.mkdtemp(prefix=f".{final.name}.stale-", dir=final.parent))
        os.replace(final, stale / final.name)
        shutil.rmtree(stale, ignore_errors=True)
    try:
        os.rename(staging, final)
    except OSError:
        if _read_manifest(final) is None:
            raise
    return final


def fetch(source: RemoteDataset, *, cache_dir: Path, base_urls: Optional[Sequence[str]] = None,
          on_progress: Optional[Progress] = None) -> Path:
    """The dataset's folder in the cache, downloaded and verified first when it is not there yet.

    `base_urls` default to ``$ADVCLI_DATA_MIRROR/<name>/`` when that is set, else the canonical hosts.
    """
    cache_dir = Path(cache_dir).expanduser()
    final = cache_dir / source.name
    if _read_manifest(final) is not None:
        return final
    if base_urls is None:
        mirror = os.environ.get(MIRROR_ENV, "").strip()
        base_urls = (mirror.rstrip("/") + f"/{source.name}/",) if mirror else source.base_urls
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{source.name}.partial-", dir=cache_dir))
    except OSError as error:
        raise DataError(f"{source.name}: cannot write the cache {cache_dir}: {error.strerror or error}") from None
    try:
        origins = {}
        for file in source.files:
            origins[file.name] = _fetch_file(source, file, staging / file.name, base_urls, on_progress)
            if source.archive is not None:
                extract_archive(staging / file.name, staging, source.archive, on_progress=on_progress)
                (staging / file.name).unlink()
        manifest = {"format": MANIFEST_FORMAT, "version": 1, "dataset": source.name,
                    "files": {f.name: {"sha256": f.sha256, "size": f.size, "url": origins[f.name]}
                              for f in source.files},
                    "sizes": _sizes(staging)}
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        return _install(staging, final)
    except OSError as error:
        raise DataError(f"{source.name}: cannot write the cache {cache_dir}: {error.strerror or error}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def fetch_dataset(name: str, *, cache_dir: Path, base_urls: Optional[Sequence[str]] = None,
                  on_progress: Optional[Progress] = None) -> Path:
    """:func:`fetch` for a dataset named in :data:`SOURCES` (``mnist``, ``fashion-mnist``, ``cifar10``)."""
    source = SOURCES.get(name)
    if source is None:
        raise DataError(f"no download known for {name!r}; known: {', '.join(SOURCES)}")
    return fetch(source, cache_dir=cache_dir, base_urls=base_urls, on_progress=on_progress)


def downloaded_folder(name: str, cache_dir: Optional[Path] = None, on_progress: Optional[Progress] = None) -> Path:
    """The folder of dataset `name` in `cache_dir` (default: :func:`advcli.data.default_cache_dir`),
    downloaded first if needed: what the ``mnist``, ``fashion-mnist`` and ``cifar10`` formats load
    when their spec names no folder."""
    from .spec import default_cache_dir

    return fetch_dataset(name, cache_dir=cache_dir if cache_dir is not None else default_cache_dir(),
                         on_progress=on_progress)
