"""Training contracts: determinism, validation, adversarial steps within bounds, graceful stop."""

from __future__ import annotations

import copy

import pytest
import torch

from advcli.attacks import perturb
from advcli.errors import AdvcliError
from advcli.models import MODELS, build_model
from advcli.threat import ThreatModel
from advcli.training import TrainConfig, train, train_model


def _weights(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_training_is_deterministic_for_a_seed(tiny_dataset, tiny_spec):
    config = TrainConfig.of(data=tiny_spec, epochs=1, device="cpu", method="fgsm-rs", eps=0.1)
    first = _weights(train_model(config, dataset=tiny_dataset).model)
    second = _weights(train_model(config, dataset=tiny_dataset).model)
    assert all(torch.equal(first[k], second[k]) for k in first)
    config = config.with_flat(seed=1)
    third = _weights(train_model(config, dataset=tiny_dataset).model)
    assert not all(torch.equal(first[k], third[k]) for k in first)


def test_history_records_every_iteration(tiny_dataset, tiny_spec):
    result = train_model(TrainConfig.of(data=tiny_spec, epochs=2, batch_size=100, device="cpu"), dataset=tiny_dataset)
    assert [row["iteration"] for row in result.history] == list(range(1, 13))
    assert {row["epoch"] for row in result.history} == {1, 2}
    assert result.metrics["epochs_completed"] == 2 and not result.interrupted
    with torch.no_grad():
        recomputed = float((result.model(tiny_dataset.x_test).argmax(1) == tiny_dataset.y_test).float().mean())
    assert result.metrics["clean_test_accuracy"] == pytest.approx(recomputed, abs=1e-6) and recomputed > 0.2


def test_should_stop_ends_after_the_current_iteration(tiny_dataset, tiny_spec, tmp_path):
    calls = []

    def stop_after_three():
        calls.append(1)
        return len(calls) >= 3

    path, result = train(TrainConfig.of(data=tiny_spec, epochs=5, device="cpu"), out=tmp_path / "stopped",
                         dataset=tiny_dataset, should_stop=stop_after_three)
    assert result.interrupted and result.metrics["iterations"] == 3
    assert (path / "model.safetensors").is_file()


@pytest.mark.parametrize(
    "overrides",
    [
        {"epochs": 0}, {"batch_size": 0}, {"lr": 0.0}, {"lr": float("nan")}, {"momentum": 1.0},
        {"method": "fgsm-rs", "eps": 0.0}, {"method": "fgsm-rs", "eps": -0.1}, {"method": "fgsm-rs", "eps": 0.1, "alpha": -1.0},
        {"method": "fgsm-rs", "eps": 0.1, "init": "gaussian"}, {"method": "fgsm-rs", "eps": 0.1, "iters": 0},
        {"method": "magic"}, {"model": "vgg"},
    ],
)
def test_invalid_training_config_is_rejected(overrides):
    with pytest.raises(AdvcliError):
        TrainConfig.of(**overrides).validate()


def test_fgsm_rs_default_step_is_one_and_a_quarter_eps():
    assert TrainConfig.of(method="fgsm-rs", eps=0.1).step_size == pytest.approx(0.125)
    assert TrainConfig.of(method="fgsm-rs", eps=0.1, alpha=0.05).step_size == 0.05


@pytest.mark.parametrize("init", ["random", "zero"])
def test_training_perturbation_respects_its_bounds(init, linear_model, linear_batch):
    x, y = linear_batch
    linear_model.train()
    x_adv = perturb(linear_model, x, y, ThreatModel(0.1, "linf", True), alpha=0.125, iters=1, init=init,
                    generator=torch.Generator().manual_seed(0))
    assert (x_adv - x).abs().max() <= 0.1 + 1e-6
    assert 0 <= x_adv.min() and x_adv.max() <= 1
    assert all(p.grad is None for p in linear_model.parameters())


@pytest.mark.parametrize("name", sorted(MODELS))
def test_models_are_shaped_from_the_data(name):
    for shape, classes in (((1, 28, 28), 10), ((3, 32, 32), 7)):
        model = build_model(name, shape, classes).eval()
        assert model(torch.rand(2, *shape)).shape == (2, classes)
    with pytest.raises(AdvcliError):
        build_model(name, (1, 28, 28), 1)


def test_small_mnist_network_matches_its_published_shape_and_rejects_tiny_inputs():
    model = build_model("mnist-small", (1, 28, 28), 10)
    assert sum(p.numel() for p in model.parameters()) == 16 * 16 + 16 + 32 * 16 * 16 + 32 + 32 * 7 * 7 * 100 + 100 + 1010
    assert model(torch.rand(3, 1, 28, 28)).shape == (3, 10)
    assert build_model("mnist-small", (1, 4, 4), 10)(torch.rand(2, 1, 4, 4)).shape == (2, 10)
    with pytest.raises(AdvcliError, match="too small"):
        build_model("mnist-small", (1, 3, 28), 10)


def test_seed_cnn_in_channels_last_flattens_in_memory_order_to_the_same_function():
    model = build_model("seed-cnn", (1, 12, 12), 4)
    laid_out = copy.deepcopy(model).to(memory_format=torch.channels_last)
    x = torch.rand(8, 1, 12, 12, generator=torch.Generator().manual_seed(1)).requires_grad_(True)
    y = torch.arange(8) % 4
    outputs, input_grads, weight_grads = [], [], []
    for net in (model, laid_out):
        loss = torch.nn.functional.cross_entropy(net(x), y)
        (input_grad, weight_grad) = torch.autograd.grad(loss, (x, net.classifier.weight))
        outputs.append(net(x).detach()), input_grads.append(input_grad), weight_grads.append(weight_grad)
    assert laid_out.features(x).is_contiguous(memory_format=torch.channels_last)  # the channels-last branch ran
    assert torch.allclose(outputs[0], outputs[1], atol=1e-5)
    assert torch.allclose(input_grads[0], input_grads[1], atol=1e-6)
    assert torch.allclose(weight_grads[0], weight_grads[1], atol=1e-6)  # training updates the same weights


def test_seed_cnn_pooling_before_its_last_relu_changes_no_output_or_gradient():
    """The reference orders conv – ReLU – max-pool; pooling first is the same function, gradients included."""
    model = build_model("seed-cnn", (1, 12, 12), 4).eval()
    conv1, relu, conv2, pool, last = model.features
    assert isinstance(pool, torch.nn.MaxPool2d) and isinstance(last, torch.nn.ReLU)
    reference = copy.deepcopy(model)  # the same head, so only the order of pooling and ReLU differs
    reference.features = torch.nn.Sequential(conv1, torch.nn.ReLU(), conv2, torch.nn.ReLU(), torch.nn.MaxPool2d(2, 2))
    # Windows whose values are all negative (ties at zero after a ReLU) are the delicate case.
    with torch.no_grad():
        conv2.bias.fill_(-0.05)
    x = torch.rand(16, 1, 12, 12, generator=torch.Generator().manual_seed(0))
    y = torch.arange(16) % 4
    outputs, gradients = [], []
    for net in (model, reference):
        xg = x.clone().requires_grad_(True)
        logits = net(xg)
        (grad,) = torch.autograd.grad(torch.nn.functional.cross_entropy(logits, y), xg)
        outputs.append(logits.detach())
        gradients.append(grad)
    with torch.no_grad():
        negative = (conv2(relu(conv1(x))) <= 0).float().mean()
    assert 0.3 < negative < 0.95
    assert torch.equal(outputs[0], outputs[1]) and torch.equal(gradients[0], gradients[1])
    assert list(model.state_dict()) == ["features.0.weight", "features.0.bias", "features.2.weight",
                                        "features.2.bias", "classifier.weight", "classifier.bias"]
