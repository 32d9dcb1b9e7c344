"""The single-process side of advcli.training.parallel (what runs without a process group): batch
splits refused before training, SyncBatchNorm swapped in and out on the model's own tensors, and
validation handing keyed validators their samples' positions."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from advcli.errors import AdvcliError
from advcli.models import build_model
from advcli.runtime.distributed import DistributedContext
from advcli.training.guard import ValidationResult
from advcli.training.parallel import (
    _swap_batch_norm,
    check_batches_split,
    check_sync_bn,
    gathered_carry,
    local_batch,
    plain_batch_norm,
    sharded_validation,
    split_carry,
)

SINGLE = DistributedContext()


def ranks(world_size: int) -> DistributedContext:
    return DistributedContext(rank=0, world_size=world_size, backend="gloo")


@pytest.mark.parametrize("count, batch_size, world_size, smallest", [
    (100, 10, 20, 10),  # every batch smaller than the processes
    (101, 10, 4, 1),  # the epoch's last batch holds 1 sample
    (3, 10, 4, 3),  # one batch, smaller than the processes
])
def test_batches_that_cannot_be_split_are_refused(count, batch_size, world_size, smallest):
    with pytest.raises(AdvcliError, match=f"a mini-batch of {smallest} samples cannot be split over {world_size} "
                                          "processes.*`batch_size`"):
        check_batches_split(count, batch_size, ranks(world_size))


@pytest.mark.parametrize("count, batch_size, world_size", [(100, 10, 10), (104, 10, 4), (5, 10, 1), (3, 10, 3)])
def test_batches_that_can_be_split_pass(count, batch_size, world_size):
    check_batches_split(count, batch_size, ranks(world_size))


def test_a_process_gets_its_strided_share_of_a_batch_and_of_a_full_one():
    share = local_batch(torch.arange(10, 17), 10, DistributedContext(rank=1, world_size=3, backend="gloo"))
    assert share.indices.tolist() == [11, 14] and share.rows == 3  # rows 1, 4, 7 of a full batch of 10
    assert share.loss_weight == pytest.approx(2 * 3 / 7)
    alone = local_batch(torch.arange(5), 8, SINGLE)
    assert alone.indices.tolist() == [0, 1, 2, 3, 4] and alone.loss_weight == 1.0 and alone.rows == 8


def test_sync_bn_is_refused_off_cuda():
    check_sync_bn(False, torch.device("cpu"))
    with pytest.raises(AdvcliError, match="`sync_bn` needs CUDA"):
        check_sync_bn(True, torch.device("cpu"))


def test_sync_batch_norm_is_swapped_in_and_out_on_the_same_tensors():
    model = build_model("preact-resnet18", (3, 32, 32), 10)
    norms = [module for module in model.modules() if isinstance(module, nn.BatchNorm2d)]
    tensors = [(norm.weight, norm.bias, norm.running_mean, norm.running_var, norm.num_batches_tracked) for norm in norms]
    _swap_batch_norm(model, lambda layer: nn.SyncBatchNorm, "sync")
    synced = [module for module in model.modules() if isinstance(module, nn.modules.batchnorm._BatchNorm)]
    assert len(synced) == len(norms) and all(isinstance(module, nn.SyncBatchNorm) for module in synced)
    plain_batch_norm(model)
    back = [module for module in model.modules() if isinstance(module, nn.modules.batchnorm._BatchNorm)]
    assert all(type(module) is nn.BatchNorm2d for module in back)
    for module, (weight, bias, mean, var, tracked) in zip(back, tensors):
        assert module.weight is weight and module.bias is bias and module.running_mean is mean
        assert module.running_var is var and module.num_batches_tracked is tracked
    assert set(model.state_dict()) == set(build_model("preact-resnet18", (3, 32, 32), 10).state_dict())


def test_a_keyed_validator_gets_the_positions_of_its_samples_and_a_plain_one_does_not():
    x, y = torch.zeros(5, 1, 4, 4), torch.zeros(5, dtype=torch.long)
    seen = {}

    def keyed(model, xs, ys, config, *, indices=None):
        seen["indices"] = None if indices is None else indices.tolist()
        return ValidationResult(0.5, 0.25)

    def plain(model, xs, ys, config):
        seen["plain"] = len(xs)
        return ValidationResult(0.5, 0.25)

    assert sharded_validation(keyed, nn.Identity(), x, y, None, SINGLE, keyed=True) == ValidationResult(0.5, 0.25)
    assert seen["indices"] == [0, 1, 2, 3, 4]
    sharded_validation(keyed, nn.Identity(), x, y, None, SINGLE, keyed=False)
    assert seen["indices"] is None
    sharded_validation(plain, nn.Identity(), x, y, None, SINGLE, keyed=True)
    assert seen["plain"] == 5


def test_one_process_keeps_its_carry_as_it_is():
    delta = torch.ones(4, 2, requires_grad=True)
    carry = {"delta": delta}
    assert gathered_carry(carry, SINGLE) is carry and split_carry(carry, SINGLE) is carry


def test_a_process_takes_its_rows_of_a_carry_stored_in_global_order():
    delta = torch.arange(10.0).view(5, 2).requires_grad_(True)
    delta.grad = -delta.detach()
    mine = split_carry({"delta": delta}, DistributedContext(rank=1, world_size=2, backend="gloo"))["delta"]
    assert mine.tolist() == [[2.0, 3.0], [6.0, 7.0]] and mine.requires_grad and mine.is_leaf
    assert mine.grad.tolist() == [[-2.0, -3.0], [-6.0, -7.0]]
