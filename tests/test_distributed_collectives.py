"""The collectives on 2 gloo processes on 127.0.0.1 (the shared job of tests/conftest.py,
library_job; tests/distributed_worker.py, scenario "collectives")."""

from __future__ import annotations

import pytest
import torch
from distributed_launch import requires_gloo

pytestmark = [requires_gloo, pytest.mark.slow]

WORLD = 2


@pytest.fixture(scope="module")
def job(library_job):
    return library_job[2]


def test_the_launch_gives_each_process_its_rank_and_a_gloo_group(job):
    assert [report["context"] for report, _ in job] == [[0, 0, 2, "gloo", "cpu"], [1, 1, 2, "gloo", "cpu"]]


def test_every_rank_takes_the_same_decision(job):
    expected = {"any:rank1": True, "any:everyone": True, "any:no one": False,
                "all:rank1": False, "all:everyone": True, "all:no one": False}
    assert [report["agree"] for report, _ in job] == [expected, expected]


def test_sums_and_means_over_ranks(job):
    for report, _ in job:
        assert report["sum_int"] == 2 * 2**53 + 1  # exact: beyond float64's integers
        assert report["sum_float"] == pytest.approx(0.3, abs=1e-15)
        assert report["weighted_mean"] == pytest.approx((0.5 * 3 + 1.0 * 1) / 4, abs=1e-15)
        assert report["totals"] == [3.0, 0.25] and report["max"] == 1.5 and report["from_main"] == 7


def test_buffers_are_broadcast_from_rank_0(job):
    for _, tensors in job:
        assert torch.equal(tensors["running_mean"], torch.full((4,), 1.0))
        assert int(tensors["num_batches_tracked"]) == 10


@pytest.mark.parametrize("count", [0, 1, 2, 3, 7])
def test_gathered_samples_are_in_single_process_order_each_once(job, count):
    indices = torch.arange(count)
    expected = {
        "features": indices.double()[:, None, None] * 10 + torch.arange(6, dtype=torch.float64).view(1, 2, 3),
        "labels": indices * 3,
        "flags": indices % 3 == 0,
    }
    (_, main), (_, other) = job
    for name, values in expected.items():
        assert torch.equal(main[f"{name}{count}"], values), name
        assert f"{name}{count}" not in other  # only rank 0 receives without to_all
        for _, tensors in job:
            assert torch.equal(tensors[f"{name}{count}_all"], values), f"{name} to all"


def test_shards_that_do_not_fit_raise_the_same_error_on_every_rank(job):
    (first, _), (second, _) = job
    assert first["short shard"] == second["short shard"]
    assert "shard sizes [3, 1] are not a strided split of 4 samples over 2 ranks" in first["short shard"]
    assert first["other dtype"] == second["other dtype"]
    assert "differ in dtype or sample shape" in first["other dtype"]
