"""The last epoch's state kept beside a run folder (``<out>.checkpoints/``): written at every epoch's
end, the newest only; a run stopped early leaves its state there; the same command started again
continues from it to the uninterrupted result; other settings are refused."""

from __future__ import annotations

import json

import pytest
import torch

from advcli.errors import CheckpointError
from advcli.training.api import train
from advcli.training.config import TrainConfig
from advcli.training.continuation import checkpoints_folder


@pytest.fixture(scope="module")
def config(tiny_spec) -> TrainConfig:
    return TrainConfig.of(data=tiny_spec, arch="mnist-small", method="fgsm-rs", eps=0.1, epochs=3, batch_size=100,
                          lr=0.05, val_split=0.1, device="cpu")


def weights(result) -> torch.Tensor:
    return torch.cat([value.reshape(-1).float() for value in result.model.state_dict().values()])


@pytest.fixture(scope="module")
def uninterrupted(config, tiny_dataset, tmp_path_factory, one_thread):
    return train(config, out=tmp_path_factory.mktemp("whole") / "run", dataset=tiny_dataset)[1]


def test_a_stopped_run_continues_from_its_checkpoint_to_the_uninterrupted_result(
        config, tiny_dataset, uninterrupted, tmp_path, one_thread):
    out, seen = tmp_path / "run", []
    steps_per_epoch = 6  # 540 training samples in batches of 100

    def on_progress(progress) -> None:
        seen.append(sorted(entry.name for entry in checkpoints_folder(out).glob("iteration-*")))

    stop_at = steps_per_epoch + 2
    kept, stopped = train(config, out=out, dataset=tiny_dataset, epoch_checkpoints=True, on_progress=on_progress,
                          should_stop=lambda: len(seen) >= stop_at)
    assert stopped.interrupted and not out.exists()
    assert seen[steps_per_epoch] == [f"iteration-{steps_per_epoch:09d}"]  # written at the first epoch's end
    assert kept == checkpoints_folder(out) / f"iteration-{stop_at:09d}"
    assert sorted(entry.name for entry in checkpoints_folder(out).iterdir()) == [kept.name]  # the newest only
    path, resumed = train(config, out=out, dataset=tiny_dataset, epoch_checkpoints=True)
    assert path == out and not checkpoints_folder(out).exists()
    assert torch.equal(weights(resumed), weights(uninterrupted))
    assert resumed.history == uninterrupted.history
    meta = json.loads((out / "model.json").read_text())
    assert meta["resumed_from"]["epoch_checkpoint"] and meta["resumed_from"]["iteration"] == stop_at


def test_a_checkpoint_of_other_settings_is_refused(config, tiny_dataset, tmp_path, one_thread):
    out = tmp_path / "run"
    train(config, out=out, dataset=tiny_dataset, epoch_checkpoints=True, should_stop=lambda: True)
    with pytest.raises(CheckpointError, match=r"other settings \(epochs 3 there, 4 now\).*`out`"):
        train(config.with_flat(epochs=4), out=out, dataset=tiny_dataset, epoch_checkpoints=True)


def test_a_single_process_keeps_no_checkpoints_unless_asked(config, tiny_dataset, tmp_path, one_thread):
    out = tmp_path / "run"
    train(config.with_flat(epochs=2), out=out, dataset=tiny_dataset,
          on_progress=lambda progress: None if progress.epoch_loss is None else assert_no_checkpoints(out))
    assert out.is_dir() and not checkpoints_folder(out).exists()


def assert_no_checkpoints(out) -> None:
    assert not checkpoints_folder(out).exists()
