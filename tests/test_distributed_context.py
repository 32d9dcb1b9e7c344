"""The single-process side of advcli.runtime.distributed: launch detection, the context, the
collectives as no-ops, the DDP wrapper's guard and the torchrun restart helpers. No processes."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.distributed as dist
from torch import nn

from advcli.errors import AdvcliError
from advcli.runtime.distributed import (
    DistributedContext,
    DistributedError,
    Launch,
    agree,
    barrier,
    broadcast_buffers,
    distributed_session,
    from_main,
    gather_samples,
    init_from_environment,
    launch_from_environment,
    max_over_ranks,
    mean_over_ranks,
    select_device,
    shutdown,
    sum_over_ranks,
    totals_over_ranks,
    unwrap_model,
    wrap_model,
)
from advcli.runtime.restarts import SHARED_STORE_VARIABLE, allowed_restarts, restart_problem, restartable_environment

LAUNCH = {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}


@pytest.fixture
def no_launch(monkeypatch):
    """This process as a plain command: none of torchrun's variables."""
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)


def test_launch_is_read_from_torchrun_variables():
    assert launch_from_environment({}) is None
    assert launch_from_environment({"PATH": "/bin", "RANK": " "}) is None
    assert launch_from_environment(LAUNCH) == Launch(rank=3, local_rank=1, world_size=4)


@pytest.mark.parametrize("environment, complaint", [
    ({"RANK": "0"}, "WORLD_SIZE, LOCAL_RANK not"),
    ({"RANK": "0", "WORLD_SIZE": "2"}, "LOCAL_RANK not"),
    ({**LAUNCH, "RANK": "x"}, "RANK must be a whole number"),
    ({**LAUNCH, "WORLD_SIZE": "-2"}, "WORLD_SIZE must be a whole number"),
    ({**LAUNCH, "RANK": "4"}, "inconsistent launch"),
    ({**LAUNCH, "WORLD_SIZE": "0"}, "inconsistent launch"),
    ({**LAUNCH, "LOCAL_RANK": "5"}, "inconsistent launch"),
])
def test_partial_or_malformed_launch_is_refused(environment, complaint):
    with pytest.raises(DistributedError, match=complaint) as caught:
        launch_from_environment(environment)
    assert isinstance(caught.value, AdvcliError) and "\n" not in str(caught.value)


def test_outside_torchrun_there_is_one_process_and_no_process_group(no_launch):
    context = init_from_environment("cpu", timeout=5)
    assert context == DistributedContext(rank=0, local_rank=0, world_size=1, backend=None, device=torch.device("cpu"))
    assert context.is_main and not context.distributed
    assert not (dist.is_available() and dist.is_initialized())
    shutdown(context)


def test_one_process_leaves_its_device_to_its_command(no_launch):
    """An ONNX file may run on onnxruntime's CUDA provider where torch sees no CUDA: one process's
    `cuda` is not refused here (the command checks its own device), an unknown choice still is."""
    context = init_from_environment("cuda", timeout=5)
    assert context.device.type == ("cuda" if torch.cuda.is_available() else "cpu") and not context.distributed
    with pytest.raises(DistributedError, match="`device` must be one of"):
        init_from_environment("gpu", timeout=5)


def test_a_torchrun_job_of_one_process_makes_no_process_group(monkeypatch):
    for name, value in {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0"}.items():
        monkeypatch.setenv(name, value)
    with distributed_session("cpu", timeout=5) as context:
        assert (context.world_size, context.backend, context.is_main) == (1, None, True)
        assert not (dist.is_available() and dist.is_initialized())


def test_a_multi_process_launch_without_rendezvous_address_is_refused(monkeypatch):
    for name, value in {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    monkeypatch.delenv("MASTER_PORT", raising=False)
    with pytest.raises(DistributedError, match="MASTER_ADDR and MASTER_PORT not set"):
        init_from_environment("cpu", timeout=5)


def test_context_is_a_frozen_value():
    context = DistributedContext(rank=2, local_rank=0, world_size=4, backend="gloo")
    assert not context.is_main and context.distributed and context.device == torch.device("cpu")
    with pytest.raises(dataclasses.FrozenInstanceError):
        context.rank = 0  # type: ignore[misc]


def test_device_choice(no_launch):
    assert select_device("cpu") == torch.device("cpu")
    with pytest.raises(DistributedError, match="`device` must be one of auto, cpu, cuda"):
        select_device("gpu")
    with pytest.raises(DistributedError, match="`timeout` must be > 0"):
        init_from_environment("cpu", timeout=0)
    if not torch.cuda.is_available():
        assert select_device("auto", 3) == torch.device("cpu")
        with pytest.raises(DistributedError, match="`device` cuda is not usable"):
            select_device("cuda")
    else:
        assert select_device("cuda", 0) == torch.device("cuda", 0)
        with pytest.raises(DistributedError, match="needs its own GPU"):
            select_device("cuda", torch.cuda.device_count())


@pytest.mark.parametrize("flag", [True, False])
@pytest.mark.parametrize("how", ["any", "all"])
def test_single_process_agreement_is_the_flag(flag, how):
    assert agree(flag, DistributedContext(), how=how) is flag


def test_single_process_collectives_return_their_input():
    context = DistributedContext()
    barrier(context)
    assert sum_over_ranks(7, context) == 7 and isinstance(sum_over_ranks(7, context), int)
    assert sum_over_ranks(0.25, context) == 0.25
    assert mean_over_ranks(0.5, context, weight=10) == 0.5
    assert totals_over_ranks([1, 2.5], context) == [1.0, 2.5]
    assert max_over_ranks(3, context) == 3.0 and from_main(5, context) == 5
    samples = torch.arange(6).view(3, 2)
    assert gather_samples(samples, context) is samples
    assert gather_samples(samples, context, to_all=True) is samples
    bn = nn.BatchNorm1d(3)
    bn.running_mean.fill_(2.0)
    broadcast_buffers(bn, context)
    assert torch.equal(bn.running_mean, torch.full((3,), 2.0))


@pytest.mark.parametrize("call, complaint", [
    (lambda c: agree(True, c, how="most"), "how must be 'any' or 'all'"),
    (lambda c: sum_over_ranks(True, c), "can only sum ints and floats"),
    (lambda c: sum_over_ranks("3", c), "can only sum ints and floats"),
    (lambda c: mean_over_ranks(1.0, c, weight=0), "total weight > 0"),
    (lambda c: gather_samples(torch.tensor(1.0), c), "samples must be a tensor of 1 to 9 dimensions"),
])
def test_bad_collective_arguments_are_refused(call, complaint):
    with pytest.raises(DistributedError, match=complaint):
        call(DistributedContext())


def test_single_process_model_is_not_wrapped_and_static_graph_is_refused():
    model = nn.Linear(3, 2)
    assert wrap_model(model, DistributedContext()) is model
    assert unwrap_model(model) is model
    for context in (DistributedContext(), DistributedContext(rank=0, world_size=2, backend="gloo")):
        with pytest.raises(DistributedError, match="static_graph is not for adversarial training"):
            wrap_model(model, context, static_graph=True)


def test_restartable_environment_sets_the_variable_on_a_copy():
    original = {"PATH": "/bin"}
    environment = restartable_environment(original)
    assert environment == {"PATH": "/bin", SHARED_STORE_VARIABLE: "1"} and original == {"PATH": "/bin"}


RESTARTABLE_WORKER = {"TORCHELASTIC_MAX_RESTARTS": "2", "GROUP_WORLD_SIZE": "1", "TORCHELASTIC_USE_AGENT_STORE": "True"}


@pytest.mark.parametrize("changes, warned", [
    ({}, True),
    ({"GROUP_WORLD_SIZE": "2"}, True),
    ({"TORCHELASTIC_USE_AGENT_STORE": "False"}, False),  # torchrun was started with the variable
    ({"TORCHELASTIC_MAX_RESTARTS": "0"}, False),
    ({"TORCHELASTIC_MAX_RESTARTS": "many"}, False),
])
def test_restart_problem_is_named_only_where_restarts_may_not_reconnect(changes, warned):
    problem = restart_problem({**RESTARTABLE_WORKER, **changes})
    assert (problem is not None) is warned
    if warned:
        assert f"{SHARED_STORE_VARIABLE}=1" in problem and "--max-restarts 2" in problem
    assert restart_problem({}) is None


def test_allowed_restarts_are_read_from_the_worker_environment():
    assert allowed_restarts({}) == 0 and allowed_restarts({"TORCHELASTIC_MAX_RESTARTS": "3"}) == 3
    assert allowed_restarts({"TORCHELASTIC_MAX_RESTARTS": "many"}) == 0
