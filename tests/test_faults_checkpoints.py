"""Fault suite: hand-edited, corrupt and crafted run folders.

model.json carries no checksum and is meant to be readable, so a user may edit it: every field
with a wrong type or value must be refused with exit 2 and one line, by every command that loads
a run, and the run must be left as it is. The weights are checksummed: altered weights are
refused; forged ones (checksum rewritten) must still be refused when unreadable or misfitting.
"""

from __future__ import annotations

import os
import shutil

import pytest
import torch
from faults.checkpoints import (
    META,
    REMOVE,
    WEIGHTS,
    edit_meta,
    flip_one_byte,
    nested_json,
    replace_weights_bytes,
    rewrite_weights,
)
from faults.contract import assert_refused, assert_succeeded, case, invoke
from faults.fixtures import artifacts, world  # noqa: F401 - fixtures

EVAL = ("--samples", 4, "--iters", 1, "--sanity-samples", 0, "--device", "cpu")

# field -> value written into model.json (REMOVE deletes it); each must be refused.
FIELD_CASES = {
    "architecture-list": ("architecture", ["seed-cnn"]),
    "architecture-int": ("architecture", 3),
    "architecture-unknown": ("architecture", "resnet-9000"),
    "architecture-null": ("architecture", None),
    "classes-int": ("classes", 4),
    "classes-string": ("classes", "abcd"),
    "classes-dict": ("classes", {"a": 0, "b": 1, "c": 2, "d": 3}),
    "classes-empty": ("classes", []),
    "classes-numbers": ("classes", [0, 1, 2, 3]),
    "classes-null": ("classes", None),
    "classes-one-too-many": ("classes", ["0", "1", "2", "3", "4"]),
    "weights-string": ("weights", "model.safetensors"),
    "weights-null": ("weights", None),
    "weights-list": ("weights", ["model.safetensors"]),
    "weights-no-checksum": ("weights.sha256", REMOVE),
    "weights-checksum-int": ("weights.sha256", 5),
    "weights-file-int": ("weights.file", 5),
    "weights-file-elsewhere": ("weights.file", "/etc/hostname"),
    "input-shape-string": ("input_shape", "5"),
    "input-shape-int": ("input_shape", 12),
    "input-shape-two-dims": ("input_shape", [1, 12]),
    "input-shape-four-dims": ("input_shape", [1, 12, 12, 1]),
    "input-shape-negative": ("input_shape", [1, -12, 12]),
    "input-shape-zero-channels": ("input_shape", [0, 12, 12]),
    "input-shape-fraction": ("input_shape", [1, 12.5, 12]),
    "input-shape-strings": ("input_shape", ["1", "12", "12"]),
    "input-shape-bools": ("input_shape", [True, 12, 12]),
    "input-shape-infinite": ("input_shape", [1, 1e999, 12]),
    "format-version-string": ("format_version", "1"),
    "format-version-null": ("format_version", None),
    "format-version-newer": ("format_version", 2),
    "format-version-list": ("format_version", [1]),
    "format-missing": ("format", REMOVE),
    "format-other": ("format", "pytorch"),
    "data-string": ("data", "npz:x.npz"),
    "data-null": ("data", None),
    "data-without-spec": ("data.spec", REMOVE),
    "data-spec-int": ("data.spec", 7),
}

# whole-file replacements of model.json
FILE_CASES = {
    "deeply-nested": nested_json(100_000),
    "not-utf8": b"\xff\xfe{\x00",
    "empty": b"",
    "json-list": b"[1, 2, 3]",
    "json-string": b'"advcli-run"',
    "truncated": None,  # the first half of the real file
}


@pytest.mark.parametrize("name", list(FIELD_CASES))
def test_a_hand_edited_model_json_field_is_refused_by_eval(name, world):
    field, value = FIELD_CASES[name]
    edit_meta(world.run, field, value)
    before = world.snapshot()
    assert_refused(invoke("eval", "--model", world.run, *EVAL))
    world.assert_unchanged(before)


@pytest.mark.parametrize("name", list(FILE_CASES))
def test_a_corrupt_model_json_is_refused_by_eval(name, world):
    meta = world.run / META
    content = FILE_CASES[name]
    if content is None:
        content = meta.read_bytes()[: meta.stat().st_size // 2]
    meta.write_bytes(content if isinstance(content, bytes) else content.encode())
    before = world.snapshot()
    assert_refused(invoke("eval", "--model", world.run, *EVAL), mentions=[str(meta)])
    world.assert_unchanged(before)


COMMAND_CASES = ["classes-int", "input-shape-string", "weights-string", "format-version-string", "data-string"]
COMMANDS = {
    "attack": ("attack", "--samples", 4, "--iters", 1),
    "export": ("export", "--parity-samples", 4),
    "resume": ("train", "--resume"),
}


@pytest.mark.parametrize("name, command", [case(name, command, id=f"{name}-{command}")
                                           for name in COMMAND_CASES for command in COMMANDS])
def test_every_command_that_loads_a_run_refuses_a_bad_field(name, command, world, tmp_path):
    field, value = FIELD_CASES[name]
    edit_meta(world.run, field, value)
    before = world.snapshot()
    args = COMMANDS[command]
    target = ("--model", world.run) if command != "resume" else (world.run,)
    outcome = invoke(*args, *target, "--out", tmp_path / ("out.onnx" if command == "export" else "out.npz"))
    assert_refused(outcome)
    world.assert_unchanged(before)


def _weights_folder(world):
    os.remove(world.run / WEIGHTS)
    (world.run / WEIGHTS).mkdir()


def _weights_fifo(world):
    os.remove(world.run / WEIGHTS)
    os.mkfifo(world.run / WEIGHTS)


def _weights_dangling(world):
    os.remove(world.run / WEIGHTS)
    (world.run / WEIGHTS).symlink_to(world.root / "gone")


WEIGHT_CASES = {
    "altered-one-byte": lambda world: flip_one_byte(world.run),
    "missing": lambda world: os.remove(world.run / WEIGHTS),
    "a-folder": _weights_folder,
    "a-fifo": _weights_fifo,
    "dangling-symlink": _weights_dangling,
    "forged-garbage": lambda world: replace_weights_bytes(world.run, b"garbage" * 10, fix_checksum=True),
    "forged-empty": lambda world: replace_weights_bytes(world.run, b"", fix_checksum=True),
    "forged-header-claims-huge": lambda world: replace_weights_bytes(
        world.run, (2**62).to_bytes(8, "little") + b"{}", fix_checksum=True),
    "forged-missing-tensor": lambda world: rewrite_weights(
        world.run, lambda t: {k: v for k, v in t.items() if k != "classifier.bias"}),
    "forged-extra-tensor": lambda world: rewrite_weights(world.run, lambda t: {**t, "extra": t["classifier.bias"].clone()}),
    "forged-wrong-shape": lambda world: rewrite_weights(
        world.run, lambda t: {**t, "classifier.bias": t["classifier.bias"][:3].clone()}),
    "forged-wrong-dtype": lambda world: rewrite_weights(
        world.run, lambda t: {**t, "classifier.bias": t["classifier.bias"].to(torch.int64)}),
}


@pytest.mark.parametrize("name", list(WEIGHT_CASES))
def test_unreadable_altered_or_forged_weights_are_refused(name, world):
    WEIGHT_CASES[name](world)
    before = world.snapshot()
    assert_refused(invoke("eval", "--model", world.run, *EVAL))
    world.assert_unchanged(before)


def _complete_run_created_as_a_list(world, folder):
    """A complete copy of the good run whose 'created' is a list (which sorts above every date as text)."""
    shutil.rmtree(folder)
    shutil.copytree(world.run, folder)
    edit_meta(folder, "created", ["9999-01-01T00:00:00+00:00"])


BAD_NEIGHBOURS = {
    "model-json-a-list": b"[1]",
    "model-json-a-number": b"5",
    "not-utf8": b"\xff\xfe",
    "deeply-nested": nested_json(100_000).encode(),
    "created-a-list": _complete_run_created_as_a_list,
}
NEWEST_RUN_COMMANDS = {
    "eval": ("eval", *EVAL, "--json"),
    "attack": ("attack", "--samples", 4, "--iters", 1, "--json"),
    "export": ("export", "--parity-samples", 4, "--json"),
}


@pytest.mark.parametrize("command", list(NEWEST_RUN_COMMANDS))
@pytest.mark.parametrize("name", list(BAD_NEIGHBOURS))
def test_one_bad_run_folder_does_not_break_commands_run_without_model(name, command, world):
    """The newest-run search skips (and may mention) a folder it cannot use; it uses the good run."""
    bad = world.runs / "zz-bad"
    bad.mkdir()
    content = BAD_NEIGHBOURS[name]
    if callable(content):
        content(world, bad)
    else:
        (bad / META).write_bytes(content)
    outcome = invoke(*NEWEST_RUN_COMMANDS[command], "--runs-dir", world.runs)
    assert_succeeded(outcome)
    assert str(world.run) in outcome.stdout and str(bad) not in outcome.stdout
