"""Fault suite: bad options, out-of-range values and a model with non-finite outputs.

Usage errors (unknown option, bad choice, below a minimum) and value errors (NaN or infinite
numbers, seeds outside the 64-bit range) must all give exit 2 and one ``error:`` line before any
work; ``--json`` output is valid JSON on success and nothing on failure.
"""

from __future__ import annotations

import math

import pytest
from faults.checkpoints import nan_outputs, rewrite_weights
from faults.contract import assert_refused, assert_succeeded, invoke, strict_json
from faults.fixtures import artifacts, world  # noqa: F401 - fixtures

EVAL = ("--samples", 4, "--iters", 1, "--sanity-samples", 0, "--device", "cpu")

USAGE_CASES = {
    "batch-size-0": ("eval", "--batch-size", 0),
    "attack-cw": ("eval", "--attack", "cw"),
    "epochs-0": ("train", "--epochs", 0),
    "unknown-option": ("eval", "--bogus"),
    "missing-value": ("eval", "--eps"),
    "norm-l3": ("eval", "--norm", "l3"),
    "device-tpu": ("train", "--device", "tpu"),
    "precision-fp8": ("eval", "--precision", "fp8"),
    "extra-argument": ("eval", "surplus"),
    "samples-not-a-number": ("eval", "--samples", "abc"),
    "unknown-command": ("frobnicate",),
}


@pytest.mark.parametrize("name", list(USAGE_CASES))
def test_usage_errors_are_one_line(name, world):
    before = world.snapshot()
    assert_refused(invoke(*USAGE_CASES[name], "--runs-dir", world.runs) if name != "unknown-command"
                   else invoke(*USAGE_CASES[name]))
    world.assert_unchanged(before)


SEED_OUT_OF_RANGE = (str(2**64), str(-(2**63) - 1), str(10**30))
EVAL_VALUE_CASES = {
    "alpha-inf": ("--alpha", "inf"),
    "alpha-nan": ("--alpha", "nan"),
    "alpha-negative": ("--alpha", -1),
    "eps-nan": ("--eps", "nan"),
    "eps-inf-l2": ("--eps", "inf", "--norm", "l2"),
    "eps-list-with-nan": ("--eps", "0.05,nan"),
    "eps-not-numbers": ("--eps", "0.1,abc"),
    "queries-0": ("--attack", "square", "--queries", 0),
    "queries-negative": ("--attack", "square", "--queries", -5),
    "restarts-0": ("--restarts", 0),
    "restarts-negative": ("--restarts", -1),
    "iters-negative": ("--iters", -1),
    "samples-0": ("--samples", 0),
    "sanity-samples-negative": ("--sanity-samples", -1),
    "target-negative": ("--target", -1),
    "target-beyond-classes": ("--target", 99),
    "min-accuracy-nan": ("--min-accuracy", "nan"),
    "min-robust-accuracy-negative": ("--min-robust-accuracy", -0.5),
    "split-unknown": ("--split", "validation"),
    **{f"seed-{seed}": ("--seed", seed) for seed in SEED_OUT_OF_RANGE},
}


@pytest.mark.parametrize("name", list(EVAL_VALUE_CASES))
def test_eval_refuses_bad_values_before_evaluating(name, world):
    before = world.snapshot()
    assert_refused(invoke("eval", "--model", world.run, *EVAL, *EVAL_VALUE_CASES[name]))
    world.assert_unchanged(before)


ATTACK_VALUE_CASES = {
    "alpha-inf": ("--alpha", "inf"),
    "eps-nan": ("--eps", "nan"),
    "seed-2**64": ("--seed", 2**64),
    "grid-unknown-format": ("--grid", "grid.xyz"),
    "out-not-npz": ("--out", "adversarials.txt"),
}


@pytest.mark.parametrize("name", list(ATTACK_VALUE_CASES))
def test_attack_refuses_bad_values_before_attacking(name, world):
    before = world.snapshot()
    args = ATTACK_VALUE_CASES[name]
    args = tuple(str(world.root / a) if a in ("grid.xyz", "adversarials.txt") else a for a in args)
    assert_refused(invoke("attack", "--model", world.run, "--samples", 4, "--iters", 1, "--device", "cpu", *args))
    world.assert_unchanged(before)


TRAIN_VALUE_CASES = {
    "train/lr-nan": ("train", "--lr", "nan"),
    "train/lr-inf": ("train", "--lr", "inf"),
    "train/lr-0": ("train", "--lr", 0),
    "train/momentum-1": ("train", "--momentum", 1),
    "train/seed-2**64": ("train", "--seed", 2**64),
    "train/seed-10**30": ("train", "--seed", 10**30),
    "robust-train/eps-nan": ("robust-train", "--eps", "nan"),
    "robust-train/alpha-inf": ("robust-train", "--alpha", "inf"),
    "robust-train/alpha-nan": ("robust-train", "--alpha", "nan"),
    "robust-train/val-split-nan": ("robust-train", "--val-split", "nan"),
    "robust-train/val-split-1.5": ("robust-train", "--val-split", 1.5),
    "robust-train/collapse-drop-0": ("robust-train", "--collapse-drop", 0),
    "robust-train/eps-ramp-negative": ("robust-train", "--eps-ramp", -1),
    "robust-train/beta-inf": ("robust-train", "--beta", "inf", "--method", "trades"),
    "robust-train/iters-0": ("robust-train", "--iters", 0, "--method", "pgd"),
    "robust-train/seed-2**64": ("robust-train", "--seed", 2**64),
}


@pytest.mark.parametrize("name", list(TRAIN_VALUE_CASES))
def test_training_refuses_bad_values_before_training(name, world):
    before = world.snapshot()
    out = world.runs / "never"
    assert_refused(invoke(*TRAIN_VALUE_CASES[name], "--data", world.artifacts.spec, "--epochs", 1, "--out", out,
                          "--device", "cpu"))
    world.assert_unchanged(before)


VERIFY = ("--samples", 4, "--bounds-only", "--device", "cpu")
VERIFY_VALUE_CASES = {
    "eps-nan": ("--eps", "nan"),
    "eps-above-1": ("--eps", 2),
    "eps-list-with-negative": ("--eps", "0.05,-0.1"),
    "eps-not-numbers": ("--eps", "0.1,abc"),
    "samples-0": ("--samples", 0),
    "alpha-steps-negative": ("--alpha-steps", -1),
    "intermediate-for-ibp": ("--method", "ibp", "--intermediate", "crown"),
    "min-certified-accuracy-nan": ("--min-certified-accuracy", "nan"),
    "min-certified-accuracy-above-1": ("--min-certified-accuracy", 1.5),
    "attack-and-bounds-only": ("--attack", "pgd"),
    "contract-for-a-run": ("--input-range", "0,255"),
    "split-unknown": ("--split", "validation"),
    "seed-2**64": ("--seed", 2**64),
}


@pytest.mark.parametrize("name", list(VERIFY_VALUE_CASES))
def test_verify_refuses_bad_values_before_verifying(name, world):
    before = world.snapshot()
    assert_refused(invoke("verify", "--model", world.run, *VERIFY, *VERIFY_VALUE_CASES[name]))
    world.assert_unchanged(before)


EXPORT_VALUE_CASES = {"opset-99": ("--opset", 99), "parity-samples-0": ("--parity-samples", 0),
                      "parity-samples-negative": ("--parity-samples", -1)}


@pytest.mark.parametrize("name", list(EXPORT_VALUE_CASES))
def test_export_refuses_bad_values(name, world):
    before = world.snapshot()
    assert_refused(invoke("export", "--model", world.run, "--out", world.root / "m.onnx", *EXPORT_VALUE_CASES[name]))
    world.assert_unchanged(before)


# --json -------------------------------------------------------------------------------------------

JSON_COMMANDS = {
    "eval": lambda w: ("eval", "--model", w.run, *EVAL),
    "attack": lambda w: ("attack", "--model", w.run, "--samples", 4, "--iters", 1, "--out", w.root / "a.npz"),
    "export": lambda w: ("export", "--model", w.run, "--out", w.root / "m.onnx", "--parity-samples", 4),
    "train": lambda w: ("train", "--data", w.artifacts.spec, "--epochs", 1, "--out", w.runs / "new", "--device", "cpu"),
    "eval-onnx": lambda w: ("eval", "--model", w.artifacts.onnx, *EVAL, "--attack", "square", "--queries", 5),
    "verify": lambda w: ("verify", "--model", w.run, *VERIFY),
    "verify-onnx": lambda w: ("verify", "--model", w.artifacts.onnx, *VERIFY),
}


@pytest.mark.parametrize("command", list(JSON_COMMANDS))
def test_json_output_is_strict_json_on_success_and_empty_on_failure(command, world):
    ok = invoke(*JSON_COMMANDS[command](world), "--json")
    assert_succeeded(ok)
    assert isinstance(strict_json(ok.stdout), dict)
    if command.startswith("eval"):  # evaluating twice is fine; a missing model is not
        failed = invoke("eval", "--model", world.root / "absent", *EVAL, "--json")
    elif command.startswith("verify"):
        failed = invoke("verify", "--model", world.root / "absent", *VERIFY, "--json")
    else:  # the same output again: refused, it exists
        failed = invoke(*JSON_COMMANDS[command](world), "--json")
    assert failed.code == 2 and failed.stdout == "", failed.describe()


def test_a_model_with_nan_outputs_is_not_scored_as_if_it_worked(world):
    """All outputs NaN: an accuracy is not a measurement. Refused (exit 2, one line naming the
    non-finite outputs), or reported with a fired sanity check saying so; never a clean pass."""
    rewrite_weights(world.run, nan_outputs)
    outcome = invoke("eval", "--model", world.run, "--samples", 20, "--iters", 1, "--sanity-samples", 10,
                     "--device", "cpu", "--json")
    if outcome.code == 2:
        message = assert_refused(outcome)
        assert "nan" in message.lower() or "finite" in message.lower()
        return
    assert outcome.code in (0, 1) and outcome.exception is None, outcome.describe()
    report = strict_json(outcome.stdout)
    fired = [check for check in report["sanity"] if check["fired"]]
    assert any("finite" in (check["name"] + check["detail"]).lower() or "nan" in (check["name"] + check["detail"]).lower()
               for check in fired), report["sanity"]
    assert not math.isnan(report["clean_accuracy"])
