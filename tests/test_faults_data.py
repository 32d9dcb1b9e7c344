"""Fault suite: malformed and hostile data files, per ``--data`` format, through the CLI.

Every case must be refused with exit 2 and one ``error:`` line naming the file, before any
training; nothing may be created and the data itself must be left as it was. Malicious pickles
must not run code. (Files that could exhaust memory are in test_faults_memory.py.)
"""

from __future__ import annotations

from pathlib import Path

import pytest
from faults.contract import assert_refused, case, invoke, tree_digest
from faults.fixtures import artifacts, world  # noqa: F401 - fixtures
from faults.hostile_data import CIFAR_CASES, FOLDER_CASES, IDX_CASES, MARKER, NPZ_CASES, SPEC_CASES


def _cases(table: dict, prefix: str) -> list:
    return list(table)


def _train(spec: str, out: Path):
    return invoke("train", "--data", spec, "--epochs", 1, "--out", out, "--device", "cpu")


def _refused_untouched(spec: str, folder: Path, tmp_path: Path) -> str:
    """Train on `spec`: refused at once, nothing created, the data untouched; the message."""
    before = tree_digest(folder)
    out = tmp_path / "never"
    message = assert_refused(_train(spec, out))
    assert not out.exists()
    assert tree_digest(folder) == before
    return message


@pytest.mark.parametrize("fmt", ["mnist", "fashion-mnist"])
@pytest.mark.parametrize("name", _cases(IDX_CASES, "idx"))
def test_malformed_idx_is_refused_naming_the_folder(name, fmt, tmp_path):
    folder = tmp_path / "idx"
    spec = IDX_CASES[name](folder, fmt)
    message = _refused_untouched(spec, folder, tmp_path)
    assert str(folder) in message


@pytest.mark.parametrize("name", _cases(CIFAR_CASES, "cifar10"))
def test_malformed_or_malicious_cifar10_is_refused_and_runs_no_code(name, tmp_path):
    folder = tmp_path / "cifar"
    spec = CIFAR_CASES[name](folder)
    message = _refused_untouched(spec, folder, tmp_path)
    assert str(folder) in message
    assert not (folder / MARKER).exists()


@pytest.mark.parametrize("name", _cases(NPZ_CASES, "npz"))
def test_malformed_npz_is_refused_naming_the_file(name, tmp_path):
    folder = tmp_path / "npz"
    folder.mkdir()
    spec = NPZ_CASES[name](folder)
    message = _refused_untouched(spec, folder, tmp_path)
    assert spec.partition(":")[2] in message


@pytest.mark.parametrize("name", _cases(FOLDER_CASES, "folder"))
def test_malformed_image_folder_is_refused_naming_the_folder(name, tmp_path):
    folder = tmp_path / "images"
    spec = FOLDER_CASES[name](folder)
    message = _refused_untouched(spec, folder, tmp_path)
    assert str(folder) in message


@pytest.mark.parametrize("name", list(("not-a-zip", "member-shorter-than-header")))
def test_npz_messages_say_what_is_wrong(name, tmp_path):
    """Neither file holds an object array; the message must not send the user looking for one."""
    folder = tmp_path / "npz"
    folder.mkdir()
    message = _refused_untouched(NPZ_CASES[name](folder), folder, tmp_path)
    assert "object arrays" not in message


@pytest.mark.parametrize("spec", [case(spec, id=name)
                                  for name, spec in SPEC_CASES.items()])
def test_bad_data_specs_are_refused(spec, tmp_path):
    out = tmp_path / "never"
    assert_refused(_train(spec, out))
    assert not out.exists()


@pytest.mark.parametrize("command", ["eval", "attack"])
def test_eval_and_attack_refuse_bad_data_the_same_way(command, world):
    """--data on eval/attack goes through the same loaders: a malformed file is refused there too."""
    spec = NPZ_CASES["nan-pixels"](world.root / "bad")
    before = world.snapshot()
    assert_refused(invoke(command, "--model", world.run, "--data", spec, "--samples", 4, "--iters", 1), mentions=["NaN"])
    world.assert_unchanged(before)
