"""A reference training loop (tests/distributed_worker.py, not advcli's loop) under 2 gloo processes,
against the same loop in this process, and the DDP rules the loop must follow."""

from __future__ import annotations

import pytest
import torch

from advcli.runtime.distributed import DistributedContext
from distributed_launch import job_failure, read_rank, requires_gloo, run_torchrun
from distributed_worker import reference_model, reference_training

pytestmark = [requires_gloo, pytest.mark.slow]

RUNS = {  # name in the job: (method, global batch size, loss weights)
    "sgd": ("sgd", 64, True),
    "sgd_uneven": ("sgd", 63, True),  # shards of 32 and 31 samples
    "sgd_unweighted": ("sgd", 63, False),
    "fgsm_rs": ("fgsm-rs", 64, True),
}


def run_job(scenario: str, out) -> list[tuple[dict, dict[str, torch.Tensor]]]:
    result = run_torchrun(scenario, out)
    assert result.returncode == 0, job_failure(result)
    from safetensors.torch import load_file

    return [(read_rank(out, rank), load_file(str(out / f"rank{rank}.safetensors"))) for rank in range(2)]


@pytest.fixture(scope="module")
def equality_job(tmp_path_factory):
    return run_job("equality", tmp_path_factory.mktemp("equality"))


@pytest.fixture(scope="module")
def rules_job(tmp_path_factory):
    return run_job("rules", tmp_path_factory.mktemp("rules"))


def single_process(name: str, steps: int) -> torch.Tensor:
    method, batch_size, weighted = RUNS[name]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        history = reference_training(reference_model(), DistributedContext(), method=method, steps=steps,
                                     batch_size=batch_size, weighted=weighted)
    finally:
        torch.set_num_threads(threads)
    return torch.stack(history)


@pytest.mark.parametrize("name", ["sgd", "sgd_uneven"])
def test_sgd_on_two_processes_equals_one_process(equality_job, name):
    (_, first), (_, second) = equality_job
    assert torch.equal(first[name], second[name]), "the ranks' parameters differ"
    expected = single_process(name, len(first[name]))
    assert float((first[name] - expected).abs().max()) < 1e-5


def test_uneven_shards_need_their_loss_weights(equality_job):
    (_, first), _ = equality_job
    expected = single_process("sgd_unweighted", len(first["sgd_unweighted"]))
    assert float((first["sgd_unweighted"] - expected).abs().max()) > 1e-5


def test_fgsm_rs_on_two_processes_equals_one_process_step_by_step(equality_job):
    (_, first), (_, second) = equality_job
    assert torch.equal(first["fgsm_rs"], second["fgsm_rs"])
    expected = single_process("fgsm_rs", len(first["fgsm_rs"]))
    per_step = (first["fgsm_rs"] - expected).abs().amax(dim=1)
    # Sign-gradient steps turn rounding differences into whole steps of alpha later on; the
    # first steps must agree (in this job all 6 did, to 1.5e-8).
    assert per_step[:3].max() < 1e-5, per_step.tolist()


def test_input_gradients_through_the_wrapper_do_not_all_reduce(rules_job):
    for report, _ in rules_job:
        calls = report["all_reduces"]
        assert calls["autograd.grad, train mode"] == 0
        assert calls["advcli.fgsm"] == 0 and calls["advcli.bim"] == 0
        assert calls["training backward"] >= 1
        assert calls["backward on the input"] >= 1  # an attack written with .backward() would


def test_only_the_wrapper_keeps_ranks_equal(rules_job):
    (_, first), (_, second) = rules_job
    assert torch.equal(first["wrapper"], second["wrapper"])
    for mistake in ("bare_module", "static_graph"):
        assert float((first[mistake] - second[mistake]).abs().max()) > 1e-4, mistake


def test_a_stop_seen_by_one_rank_stops_every_rank(rules_job):
    assert [report["stopped_at"] for report, _ in rules_job] == [2, 2]
    assert [report["guard_all"] for report, _ in rules_job] == [False, False]


def test_batchnorm_statistics_differ_until_broadcast(rules_job):
    (_, first), (_, second) = rules_job
    assert not torch.equal(first["bn_after_training"], second["bn_after_training"])
    assert torch.equal(first["bn_after_broadcast"], second["bn_after_broadcast"])
    assert torch.equal(first["bn_after_broadcast"], first["bn_after_training"])
