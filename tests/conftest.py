"""Shared fixtures: small deterministic data and models, so every test runs in seconds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from advcli.data import generate_digits, load_dataset
from advcli.training import TrainConfig, train

SHARED_MNIST = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"


@pytest.fixture(scope="session")
def tiny_npz(tmp_path_factory) -> Path:
    """A small digits dataset (600 train, 200 test) as an npz file, in the `npz:` format."""
    x_train, y_train, x_test, y_test = generate_digits(n_train=600, n_test=200, seed=7)
    path = tmp_path_factory.mktemp("data") / "tiny.npz"
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return path


@pytest.fixture(scope="session")
def micro_spec(tmp_path_factory) -> str:
    """An even smaller digits set (120 train, 40 test, subsampled to 8x8), for runs whose arithmetic
    is slow here (bfloat16 is emulated on CPUs without it): what they check needs no more data."""
    x_train, y_train, x_test, y_test = generate_digits(n_train=120, n_test=40, seed=8)
    x_train, x_test = x_train[:, 2:26:3, 2:26:3], x_test[:, 2:26:3, 2:26:3]
    path = tmp_path_factory.mktemp("data") / "micro.npz"
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return f"npz:{path}"


@pytest.fixture(scope="session")
def micro_dataset(micro_spec: str):
    return load_dataset(micro_spec)


@pytest.fixture(scope="session")
def micro_run(tmp_path_factory, micro_dataset, micro_spec) -> Path:
    """A seed-cnn run on the 8x8 micro set (1 epoch): enough to run commands on in bfloat16."""
    path, _ = train(TrainConfig.of(data=micro_spec, epochs=1, device="cpu", precision="fp32"),
                    out=tmp_path_factory.mktemp("runs") / "micro", dataset=micro_dataset)
    return path


@pytest.fixture(scope="session")
def tiny_spec(tiny_npz: Path) -> str:
    return f"npz:{tiny_npz}"


@pytest.fixture(scope="session")
def tiny_dataset(tiny_spec: str):
    return load_dataset(tiny_spec)


@pytest.fixture(scope="session")
def pooled_spec(tiny_dataset, tmp_path_factory) -> str:
    """The tiny digits pooled down to 1x7x7 (as an npz spec): bound propagation on them takes milliseconds."""
    import torch.nn.functional as F

    path = tmp_path_factory.mktemp("pooled") / "pooled.npz"
    np.savez(path, x_train=F.avg_pool2d(tiny_dataset.x_train, 4).numpy(), y_train=tiny_dataset.y_train.numpy(),
             x_test=F.avg_pool2d(tiny_dataset.x_test, 4).numpy(), y_test=tiny_dataset.y_test.numpy())
    return f"npz:{path}"


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, tiny_dataset, tiny_spec) -> Path:
    """A standard seed-cnn run trained briefly on the tiny data (good clean accuracy, not robust)."""
    runs = tmp_path_factory.mktemp("runs")
    path, _ = train(TrainConfig.of(data=tiny_spec, epochs=10, device="cpu"), out=runs / "standard", dataset=tiny_dataset)
    return path


class LinearNet(nn.Module):
    """A fixed, deterministic linear classifier on 1x8x8 inputs."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.linear = nn.Linear(64, 4)
        with torch.no_grad():
            self.linear.weight.copy_(torch.randn(4, 64, generator=generator))
            self.linear.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1))


@pytest.fixture
def linear_model() -> LinearNet:
    return LinearNet()


@pytest.fixture
def linear_batch(linear_model) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs in [0, 1] with labels set to the model's own clean predictions (all clean-correct)."""
    x = torch.rand(32, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = linear_model(x).argmax(1)
    return x, y


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models: one torch thread is faster than two fighting over busy cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def library_job(tmp_path_factory):
    """One job of 2 gloo processes running the collectives, the DDP rules, advcli's training and its
    evaluation (tests/distributed_worker.py, scenario "library"); shared by the test_distributed_*
    modules. Returns the job's folder, its inputs, and each rank's report and tensors."""
    import json

    from distributed_launch import gloo_unavailable_reason, read_rank, run_ranks
    from training_scenarios import STOP_AT, resume_config, stop_after, write_data

    reason = gloo_unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    out = tmp_path_factory.mktemp("library")
    data = write_data(tmp_path_factory.mktemp("distributed-data"))
    dataset = load_dataset(data)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single_stopped, _ = train(resume_config(data), out=out / "single-stopped", dataset=dataset,
                                  should_stop=stop_after(STOP_AT))
        eval_run, _ = train(TrainConfig.of(data=data, arch="mnist-small", epochs=6, batch_size=32, lr=0.05,
                                           device="cpu", seed=4), out=out / "eval-run", dataset=dataset)
    finally:
        torch.set_num_threads(threads)
    inputs = {"data": data, "single_stopped": str(single_stopped), "run": str(eval_run)}
    (out / "job.json").write_text(json.dumps(inputs))
    finished = run_ranks("library", out, timeout=180)
    assert [code for code, _ in finished] == [0, 0], "\n".join(output[-3000:] for _, output in finished)
    from safetensors.torch import load_file

    ranks = [(read_rank(out, rank), load_file(str(out / f"rank{rank}.safetensors"))) for rank in range(2)]
    return out, inputs, ranks
