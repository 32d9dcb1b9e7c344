"""Evaluation on 2 gloo processes: the engine's per-sample outcomes, the report and crafted examples
(the shared job of tests/conftest.py, library_job) and ``advcli eval`` itself, all exactly what one
process gives for deterministic attacks."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from distributed_launch import requires_gloo, start_commands
from training_scenarios import EVAL_ATTACKS, EVAL_RADII, SQUARE_QUERIES, eval_config

from advcli.data import load_dataset
from advcli.evaluation.api import evaluate
from advcli.evaluation.crafting import CraftConfig, craft
from advcli.evaluation.engine import attack_over_radii, clean_predictions
from advcli.io.runs import load_run
from advcli.runtime.victim import Victim

pytestmark = [requires_gloo, pytest.mark.slow]

VOLATILE = ("created", "seconds", "versions", "world_size", "distributed_backend")


def figures(report: dict) -> dict:
    """A JSON report without what differs between runs and launches (time, versions, processes)."""
    kept = {key: value for key, value in report.items() if key not in VOLATILE}
    kept["attacks"] = [{key: value for key, value in attack.items() if key != "seconds"} for attack in kept["attacks"]]
    kept["curve"] = [{**point, "attacks": [{key: value for key, value in attack.items() if key != "seconds"}
                                           for attack in point["attacks"]]} for point in kept["curve"]]
    return kept


@pytest.fixture(scope="module")
def job(library_job):
    return library_job


@pytest.fixture(scope="module")
def single_report(job):
    _, inputs, _ = job
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return json.loads(json.dumps(evaluate(eval_config(inputs["run"], inputs["data"])).to_dict()))  # as JSON reads
    finally:
        torch.set_num_threads(threads)


def test_sharded_outcomes_are_one_process_outcomes_sample_by_sample(job):
    _, inputs, ranks = job
    run = load_run(inputs["run"])
    x, y = load_dataset(inputs["data"]).split("test")
    victim = Victim.of(run.model, precision="fp32")
    config = eval_config(inputs["run"], inputs["data"])
    clean = clean_predictions(victim, x, batch_size=9) == y
    for _, tensors in ranks:
        assert torch.equal(tensors["clean"], clean)
    assert 0 < int(clean.sum()) < len(y)
    for index, name in enumerate(EVAL_ATTACKS):
        attacks = [config.resolved_attacks(eps)[index] for eps in EVAL_RADII]
        for eps, outcome in zip(EVAL_RADII, attack_over_radii(victim, x, y, clean, attacks, num_classes=10,
                                                              batch_size=9, seed=0)):
            for _, tensors in ranks:
                assert torch.equal(tensors[f"{name}.{eps}.broken_by"], outcome.broken_by), (name, eps)


def test_sharded_report_is_the_one_process_report(job, single_report):
    _, _, ranks = job
    first, second = (report["report"] for report, _ in ranks)
    assert figures(first) == figures(single_report) and figures(second) == figures(single_report)
    assert (first["world_size"], first["distributed_backend"]) == (2, "gloo")
    assert (single_report["world_size"], single_report["distributed_backend"]) == (1, None)
    assert 0 < single_report["robust_accuracy"] < single_report["clean_accuracy"]


def test_square_queries_are_counted_over_every_rank(job, single_report):
    """Square draws from each rank's own generator (its figures are another seed's), but every
    rank reports the same figures, and the queries of all ranks are counted."""
    _, _, ranks = job
    first, second = (report["square"] for report, _ in ranks)
    assert figures(first) == figures(second)
    (square,) = first["attacks"]
    assert square["attacked"] == round(single_report["clean_accuracy"] * single_report["samples"])
    assert 1 <= square["queries_mean"] <= SQUARE_QUERIES + 1  # one query to start, one per iteration


def test_sharded_crafting_saves_one_process_examples(job, tmp_path):
    out, inputs, ranks = job
    config = CraftConfig.of(model=inputs["run"], data=inputs["data"], attack="bim", eps=0.1, batch_size=9,
                            device="cpu", precision="fp32", out=str(tmp_path / "single.npz"))
    single = craft(config)
    assert [report["crafted"] for report, _ in ranks] == [
        {"adversarial_accuracy": single.adversarial_accuracy, "samples": single.samples}] * 2
    sharded, alone = np.load(out / "crafted.npz"), np.load(tmp_path / "single.npz")
    for name in ("adversarials", "adversarial_predictions", "clean_predictions", "labels", "indices"):
        assert np.array_equal(sharded[name], alone[name]), name


def test_eval_command_on_two_processes_reports_once_and_exits_alike(job, single_report, tmp_path):
    """``advcli eval --json`` with a threshold missed: one JSON report (rank 0's), the one-process
    figures, exit 1 on both ranks."""
    _, inputs, _ = job
    command = [sys.executable, "-m", "advcli", "eval", "--model", inputs["run"], "--data", inputs["data"],
               *[part for name in EVAL_ATTACKS for part in ("--attack", name)],
               "--eps", ",".join(str(eps) for eps in EVAL_RADII), "--per-class", "--batch-size", "9",
               "--sanity-samples", "16", "--device", "cpu", "--precision", "fp32", "--json",
               "--min-robust-accuracy", "0.99", "--timeout", "60"]
    ranks = start_commands(command, separate_stderr=True)
    try:
        outputs = [rank.communicate(timeout=120) for rank in ranks]
    except subprocess.TimeoutExpired:
        for rank in ranks:
            rank.kill()
        raise
    codes = [rank.returncode for rank in ranks]
    assert codes == [1, 1], outputs
    (main_out, main_err), (other_out, other_err) = outputs
    assert other_out == "" and "error" not in other_err
    assert figures(json.loads(main_out)) == {**figures(single_report), "passed": False,
                                            "failures": json.loads(main_out)["failures"],
                                            "thresholds": {"min_accuracy": None, "min_robust_accuracy": 0.99},
                                            "config": json.loads(main_out)["config"]}


def test_a_restartable_torchrun_job_without_the_store_variable_is_told(job, monkeypatch):
    """A worker of ``torchrun --max-restarts 1`` started without TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1
    (one process: no process group to set up here) says that a restart may not reconnect."""
    from typer.testing import CliRunner

    from advcli.cli.main import app

    _, inputs, _ = job
    worker = {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "TORCHELASTIC_RUN_ID": "test",
              "TORCHELASTIC_MAX_RESTARTS": "1", "TORCHELASTIC_USE_AGENT_STORE": "True"}
    result = CliRunner().invoke(app, ["eval", "--model", inputs["run"], "--attack", "fgsm", "--samples", "8",
                                      "--sanity-samples", "0", "--device", "cpu", "--json"], env=worker)
    assert result.exit_code == 0, result.output
    assert "TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1" in result.output
