"""White-box attacks through the converted file equal those on the torch model it was exported from.

An advcli seed-cnn is trained briefly, exported with advcli.export_onnx, and attacked twice with the
same seed: advcli.pgd on the original torch model (judged by torch) and advcli.pgd on the converted
file (judged by onnxruntime on the file). The robust samples are the same; the L-inf adversarial
images are identical bit for bit. L2 steps scale by the gradient's norm, and the two gradients differ
by rounding (about 2e-7 relative: the checkpoint's first convolution takes its input gradient as a
matrix product, the file's Conv through the library kernel), so L2 images agree to a few ulps.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import advcli
from advcli.data import generate_digits
from advcli.runtime.onnx_import import white_box


@pytest.fixture(scope="module")
def exported_seed_cnn(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pgd")
    x_train, y_train, x_test, y_test = generate_digits(n_train=300, n_test=100, seed=11)
    np.savez(folder / "digits.npz", x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    spec = f"npz:{folder / 'digits.npz'}"
    path, _ = advcli.train(data=spec, arch="seed-cnn", epochs=2, batch_size=10, lr=0.02, device="cpu", out=folder / "run")
    run = advcli.load_run(path)
    exported = advcli.export_onnx(run, folder / "seed-cnn.onnx", parity_samples=32)
    x, y = advcli.load_dataset(spec).split("test")
    return run, Path(exported.path), x[:60], y[:60]


@pytest.mark.slow
@pytest.mark.parametrize("attack,options", [
    (advcli.pgd, {"iters": 10}),
    (advcli.pgd, {"iters": 5, "norm": "l2"}),
    (advcli.apgd, {"iters": 10}),
])
def test_attacks_on_the_converted_file_equal_attacks_on_the_original(exported_seed_cnn, attack, options, one_thread):
    run, path, x, y = exported_seed_cnn
    box = white_box(path, x)
    original = run.model.eval()
    l2 = options.get("norm") == "l2"
    eps = 0.5 if l2 else 0.05
    on_torch = attack(original, x, y, eps=eps, generator=torch.Generator().manual_seed(3), **options)
    on_file = attack(box.model, x, y, eps=eps, generator=torch.Generator().manual_seed(3), **options)
    if l2:
        assert (on_torch - on_file).abs().max() <= 1e-6
    else:
        assert torch.equal(on_torch, on_file)
    with torch.no_grad():
        robust_torch = original(on_torch).argmax(1) == y
    robust_file = box.judge.predict(on_file) == y
    assert torch.equal(robust_torch, robust_file)
    clean = box.judge.predict(x) == y
    assert 0 < int(robust_file.sum()) < int(clean.sum())  # the attack matters, and not every sample falls
