"""advcli's training loop on 2 gloo processes (the shared job of tests/conftest.py, library_job)
against the same runs in this process, and the DDP rules the loop follows (shown on a reference loop)."""

from __future__ import annotations

import json

import pytest
import torch
from distributed_launch import requires_gloo
from distributed_worker import reference_model, reference_training
from training_scenarios import STOP_AT, flat_parameters, guard_config, method_config, resume_config, stop_after

from advcli.data import load_dataset
from advcli.runtime.distributed import DistributedContext
from advcli.training.api import resume_training
from advcli.training.loop import train_model
from advcli.training.methods import METHODS

pytestmark = [requires_gloo, pytest.mark.slow]


@pytest.fixture(scope="module")
def job(library_job):
    out, _, ranks = library_job
    return out, ranks


@pytest.fixture(scope="module")
def data(library_job) -> str:
    return library_job[1]["data"]


@pytest.fixture(scope="module")
def dataset(data):
    return load_dataset(data)


@pytest.fixture(scope="module")
def uninterrupted(data, dataset, one_thread):
    """The resume configuration run through on one process."""
    return flat_parameters(train_model(resume_config(data), dataset=dataset).model)


def close(first: torch.Tensor, second: torch.Tensor) -> float:
    return float((first - second).abs().max())


def test_plain_training_on_two_processes_equals_one_process(job, data, dataset, one_thread):
    _, ((_, first), (_, second)) = job
    assert torch.equal(first["method.none"], second["method.none"]), "the ranks' weights differ"
    single = train_model(method_config("none", data), dataset=dataset)
    assert close(first["method.none"], flat_parameters(single.model)) < 1e-5


@pytest.mark.parametrize("method", METHODS.names())
def test_every_method_trains_alike_on_two_processes(job, method, data, dataset, one_thread):
    """Ranks hold the same weights; the first steps' losses are one process's (sign-gradient attacks
    turn rounding differences into whole steps later on)."""
    _, ((first_report, first), (second_report, second)) = job
    assert torch.equal(first[f"method.{method}"], second[f"method.{method}"])
    assert first_report["losses"][method] == second_report["losses"][method]
    config = method_config(method, data).with_flat(epochs=1)
    single = train_model(config, dataset=dataset, should_stop=stop_after(3))
    expected = [row["loss"] for row in single.history]
    assert first_report["losses"][method][:3] == pytest.approx(expected, abs=2e-5)


def test_guard_decisions_agree_across_ranks_and_with_one_process(job, data, dataset, one_thread):
    _, ((first, _), (second, _)) = job
    assert first["guard"] == second["guard"] and first["guard_history"] == second["guard_history"]
    single = train_model(guard_config(data), dataset=dataset)
    assert first["guard"]["events"], "the configuration is meant to roll back at least once"
    assert [event["iteration"] for event in first["guard"]["events"]] == [
        event["iteration"] for event in single.guard["events"]]
    assert first["guard"]["best_iteration"] == single.guard["best_iteration"]
    assert first["guard"]["best_val_robust_accuracy"] == pytest.approx(single.guard["best_val_robust_accuracy"])


def test_a_stop_seen_by_one_rank_saves_a_run_that_one_process_resumes(job, dataset, uninterrupted, one_thread):
    out, ((first, _), (second, _)) = job
    assert first["stopped"] == {"interrupted": True, "iterations": STOP_AT, "saved": True, "has_state": True}
    assert second["stopped"] == {"interrupted": True, "iterations": STOP_AT, "saved": True, "has_state": False}
    # Several processes keep epoch checkpoints, and a run stopped early leaves its state with them.
    kept = out / "two-stopped.checkpoints" / f"iteration-{STOP_AT:09d}"
    assert first["stopped_path"] == second["stopped_path"] == str(kept) and not (out / "two-stopped").exists()
    meta = json.loads((kept / "model.json").read_text())
    assert meta["distributed"] == {"world_size": 2, "backend": "gloo", "global_batch_size": 63}
    _, resumed = resume_training(kept, out=out / "one-resumed", dataset=dataset)
    assert resumed.metrics["iterations"] == 20 and resumed.distributed is None
    assert close(flat_parameters(resumed.model), uninterrupted) < 1e-5


def test_two_processes_resume_a_one_process_run(job, uninterrupted):
    out, ((first, first_tensors), (_, second_tensors)) = job
    assert first["resumed_iterations"] == 20
    assert torch.equal(first_tensors["resumed"], second_tensors["resumed"])
    assert close(first_tensors["resumed"], uninterrupted) < 1e-5
    meta = json.loads((out / "two-resumed" / "model.json").read_text())
    assert meta["resumed_from"]["iteration"] == STOP_AT and meta["distributed"]["world_size"] == 2


def reference_single(steps: int, weighted: bool) -> torch.Tensor:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return torch.stack(reference_training(reference_model(), DistributedContext(), method="sgd", steps=steps,
                                              batch_size=63, weighted=weighted))
    finally:
        torch.set_num_threads(threads)


def test_uneven_shards_need_their_loss_weights(job):
    _, ((_, first), _) = job
    expected = reference_single(len(first["uneven_weighted"]), True)
    assert close(first["uneven_weighted"], expected) < 1e-5
    assert close(first["uneven_unweighted"], expected) > 1e-5


def test_input_gradients_through_the_wrapper_do_not_all_reduce(job):
    for report, _ in job[1]:
        calls = report["all_reduces"]
        assert calls["autograd.grad, train mode"] == 0
        assert calls["advcli.fgsm"] == 0 and calls["advcli.bim"] == 0
        assert calls["training backward"] >= 1
        assert calls["backward on the input"] >= 1  # an attack written with .backward() would


def test_only_the_wrapper_keeps_ranks_equal(job):
    (_, first), (_, second) = job[1]
    assert torch.equal(first["wrapper"], second["wrapper"])
    for mistake in ("bare_module", "static_graph"):
        assert close(first[mistake], second[mistake]) > 1e-4, mistake


def test_a_stop_seen_by_one_rank_stops_every_rank(job):
    assert [report["stopped_at"] for report, _ in job[1]] == [2, 2]
    assert [report["guard_all"] for report, _ in job[1]] == [False, False]


def test_batchnorm_statistics_differ_until_broadcast(job):
    (_, first), (_, second) = job[1]
    assert not torch.equal(first["bn_after_training"], second["bn_after_training"])
    assert torch.equal(first["bn_after_broadcast"], second["bn_after_broadcast"])
    assert torch.equal(first["bn_after_broadcast"], first["bn_after_training"])
