"""What white-box attacks on third-party ONNX files buy: robust accuracy under PGD/APGD crafted on the
converted module (every prediction judged by onnxruntime on the file) against Square alone on
onnxruntime's outputs, at the same eps on the same MNIST samples, with the time each takes.

Files (each from a network trained here on an MNIST subset): an advcli seed-cnn (standard and FGSM-RS)
through advcli.export_onnx; a BatchNorm CNN and a small residual net through torch's TorchScript
exporter (opsets 11, 17) and its dynamo exporter (18, 26; needs onnxscript); a uint8-input file; a
tf2onnx-style NHWC file and an exportONNXNetwork-style opset-9 file with its batch fixed at 1 (both
written node by node with the trained weights, as tests/onnx_import_models.py writes them).

    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/onnx_whitebox.py --samples 300 --json results.json

Not a test: the figures depend on the machine, its load and the training run.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

import advcli
from advcli.errors import AdvcliError
from advcli.runtime.onnx_import import InputContract, round_to_grid, white_box

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the third-party file styles the tests build

from onnx_import_helpers import export_dynamo, export_legacy  # noqa: E402
from onnx_import_models import (  # noqa: E402
    BatchNormCNN,
    Byte255,
    Normalised,
    SmallResNet,
    WithSoftmax,
    keras_style_file,
    matlab_style_file,
)


def train_torch(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, seed: int = 0) -> nn.Module:
    """A plain Adam loop (these networks stand for other people's training, not advcli's)."""
    torch.manual_seed(seed)
    optimiser = torch.optim.Adam(model.parameters(), lr=2e-3)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x))
        for start in range(0, len(x), 128):
            rows = order[start:start + 128]
            loss = nn.functional.cross_entropy(model(x[rows]), y[rows])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    return model.eval()


class KerasLike(nn.Module):
    """The network keras_style_file writes: conv 5x5 stride 2 SAME (on 28x28: one row and column
    before, two after) - ReLU - flattened in NHWC order - dense."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.dense = nn.Conv2d(1, 16, 5, stride=2), nn.Linear(16 * 14 * 14, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = torch.relu(self.conv(nn.functional.pad(x, (1, 2, 1, 2))))
        return self.dense(features.permute(0, 2, 3, 1).flatten(1))


class MatlabLike(nn.Module):
    """The network matlab_style_file writes: mean-image subtraction - conv 3x3 - ReLU - max-pool - dense."""

    def __init__(self, mean_image: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mean_image", mean_image)
        self.conv, self.fc = nn.Conv2d(1, 8, 3, padding=1), nn.Linear(8 * 14 * 14, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.max_pool2d(torch.relu(self.conv(x - self.mean_image)), 2)
        return self.fc(x.flatten(1))


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().numpy().astype(np.float32)


def file_recipes(x: torch.Tensor, y: torch.Tensor, spec: str, folder: Path, epochs: int) -> list[dict[str, Any]]:
    """Each file: what it is, and how to train its network and write it (run only when measured)."""
    trained: dict[str, Any] = {}

    def once(key: str, make: Callable[[], Any]) -> Any:
        if key not in trained:
            trained[key] = make()
        return trained[key]

    def seed_cnn(method: str) -> Path:
        run_path, _ = advcli.train(data=spec, arch="seed-cnn", epochs=epochs, device="cpu", method=method,
                                   eps=0.1 if method != "none" else 0.0, out=folder / f"seed-{method}")
        return advcli.export_onnx(advcli.load_run(run_path), folder / f"seed-{method}.onnx", parity_samples=64).path

    def cnn() -> nn.Module:
        return once("cnn", lambda: train_torch(BatchNormCNN(1, 28), x, y, epochs))

    def resnet() -> nn.Module:
        return once("resnet", lambda: train_torch(Normalised(SmallResNet(1, flatten_to=14), (0.13,), (0.31,)), x, y, epochs, seed=1))

    def keras() -> bytes:
        net = train_torch(KerasLike(), x, y, epochs, seed=2)
        return keras_style_file(_np(net.conv.weight), _np(net.conv.bias), _np(net.dense.weight), _np(net.dense.bias), 28)

    def matlab() -> bytes:
        mean_image = x[:1000].mean(0)
        net = train_torch(MatlabLike(mean_image), x, y, epochs, seed=3)
        return matlab_style_file(_np(mean_image), _np(net.conv.weight), _np(net.conv.bias), _np(net.fc.weight), _np(net.fc.bias))

    example, pair = x[:1], x[:2]
    recipes = [
        ("advcli seed-cnn (standard)", "advcli.export_onnx", 18, "seed-cnn", lambda: seed_cnn("none"), InputContract()),
        ("advcli seed-cnn (FGSM-RS eps 0.1)", "advcli.export_onnx", 18, "seed-cnn", lambda: seed_cnn("fgsm-rs"), InputContract()),
        ("BatchNorm CNN", "torch legacy", 11, "conv-relu-bn-pool-conv-fc-bn1d-fc", lambda: export_legacy(cnn(), example, 11),
         InputContract()),
        ("residual net, Sub/Div front", "torch legacy", 17, "stem + 2 residual blocks + fc",
         lambda: export_legacy(resnet(), example, 17), InputContract()),
        ("BatchNorm CNN + Softmax", "torch dynamo", 18, "conv-relu-bn-pool-conv-fc-bn1d-fc-softmax",
         lambda: export_dynamo(WithSoftmax(cnn()), pair, 18), InputContract()),
        ("residual net, Sub/Div front", "torch dynamo", 26, "stem + 2 residual blocks + fc",
         lambda: export_dynamo(resnet(), pair, 26), InputContract()),
        # The same residual net, its normalisation left to the contract (outside the file).
        ("residual net, mean/std in the contract", "torch dynamo", 26, "stem + 2 residual blocks + fc",
         lambda: export_dynamo(resnet().inner, pair, 26), InputContract(mean=(0.13,), std=(0.31,))),
        ("BatchNorm CNN, uint8 input", "torch legacy", 13, "Cast-Div front + BatchNorm CNN",
         lambda: export_legacy(Byte255(cnn()), (example * 255).to(torch.uint8), 13), InputContract(input_range=(0, 255))),
        ("tf2onnx-style NHWC + Softmax", "hand-written (tf2onnx style)", 13, "Transpose-conv-Transpose-Reshape-dense-softmax",
         keras, InputContract(layout="nhwc")),
        ("exportONNXNetwork-style, batch fixed at 1", "hand-written (MATLAB style)", 9, "mean-conv-bn-relu-pool-fc-softmax",
         matlab, InputContract()),
    ]
    dynamo = importlib.util.find_spec("onnxscript") is not None
    return [{"name": name, "exporter": exporter, "opset": opset, "architecture": architecture, "make": make,
             "contract": contract} for name, exporter, opset, architecture, make, contract in recipes
            if dynamo or exporter != "torch dynamo"]


def written(entry: dict[str, Any]) -> dict[str, Any]:
    """`entry` with its file, or with the exporter's failure (itself a result)."""
    try:
        return {**entry, "data": entry["make"]()}
    except Exception as error:
        return {**entry, "error": f"export failed: {type(error).__name__}: {' '.join(str(error).split())[:200]}"}


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - started


def measure(entry: dict[str, Any], x: torch.Tensor, y: torch.Tensor, eps: float, steps: int, queries: int) -> dict[str, Any]:
    described = {key: entry[key] for key in ("name", "exporter", "opset", "architecture")}
    if "error" in entry:
        return {**described, "error": entry["error"]}
    try:
        box, box_seconds = timed(lambda: white_box(entry["data"], x, contract=entry["contract"]))
    except AdvcliError as error:  # the white-box path refused: what a caller would fall back from
        return {**described, "error": str(error)}
    judge, grid = box.judge, box.integer_grid
    if grid:
        x = torch.round(x * 255) / 255
    budget = box.attack_eps(eps)

    def judged(x_adv: torch.Tensor) -> torch.Tensor:
        if grid:
            x_adv = round_to_grid(x_adv, x, eps=eps)
        return judge.predict(x_adv) == y

    clean = judge.predict(x) == y
    pgd, pgd_s = timed(lambda: judged(advcli.pgd(box.model, x, y, eps=budget, iters=steps, generator=torch.Generator().manual_seed(0))))
    apgd, apgd_s = timed(lambda: judged(advcli.apgd(box.model, x, y, eps=budget, iters=steps, generator=torch.Generator().manual_seed(0))))
    square, square_s = timed(lambda: judged(advcli.square_attack(judge, x, y, eps=budget, queries=queries,
                                                                 generator=torch.Generator().manual_seed(0))[0]))
    white = clean & pgd & apgd
    return {
        **described, "convert_s": box.converted.seconds, "white_box_setup_s": box_seconds,
        "parity_max_abs_diff": box.parity.max_abs_diff, "parity_relative_diff": box.parity.relative_diff,
        "parity_argmax_agreement": box.parity.argmax_agreement, "softmax_cut": box.converted.softmax_cut,
        "notes": box.notes, "attack_eps": budget, "samples": len(x), "clean": float(clean.float().mean()),
        "pgd": float((clean & pgd).float().mean()), "pgd_s": pgd_s, "apgd": float((clean & apgd).float().mean()),
        "apgd_s": apgd_s, "white_box": float(white.float().mean()), "square": float((clean & square).float().mean()),
        "square_s": square_s, "all": float((white & square).float().mean()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "mnist"))
    parser.add_argument("--train", type=int, default=8000, help="training images (first of MNIST's train split)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--eps", type=float, default=0.1)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--only", default="", help="measure only files whose name contains this text")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)
    dataset = advcli.load_dataset(f"mnist:{args.data}")
    folder = Path(tempfile.mkdtemp(prefix="onnx-whitebox-"))
    x_train, y_train = dataset.split("train")
    x_test, y_test = dataset.split("test")
    subset = folder / "mnist-subset.npz"
    np.savez(subset, x_train=(x_train[:args.train, 0] * 255).round().to(torch.uint8).numpy(), y_train=y_train[:args.train].numpy(),
             x_test=(x_test[:2000, 0] * 255).round().to(torch.uint8).numpy(), y_test=y_test[:2000].numpy())
    recipes = file_recipes(x_train[:args.train], y_train[:args.train], f"npz:{subset}", folder, args.epochs)
    x, y = x_test[:args.samples], y_test[:args.samples]
    rows = []
    for recipe in recipes:
        if args.only not in recipe["name"]:
            continue
        entry, build_s = timed(lambda: written(recipe))
        row = {**measure(entry, x, y, args.eps, args.steps, args.queries), "train_and_export_s": build_s}
        rows.append(row)
        if "error" in row:
            print(f"{row['name']:<44} {row['exporter']:<28} opset {row['opset']:<3} {row['error']}", flush=True)
            continue
        print(f"{row['name']:<44} {row['exporter']:<28} opset {row['opset']:<3} convert {row['convert_s']:.3f}s "
              f"diff {row['parity_max_abs_diff']:.2g} (rel {row['parity_relative_diff']:.2g}) agree {row['parity_argmax_agreement']:.3f} | "
              f"clean {row['clean']:.3f} PGD {row['pgd']:.3f} ({row['pgd_s']:.1f}s) APGD {row['apgd']:.3f} ({row['apgd_s']:.1f}s) "
              f"Square {row['square']:.3f} ({row['square_s']:.1f}s) all {row['all']:.3f}", flush=True)
    if args.json:
        settings = {k: v for k, v in vars(args).items() if k != "json"}
        args.json.write_text(json.dumps({"settings": settings, "files": rows,
                                         "versions": {"torch": torch.__version__}}, indent=2, default=str))


if __name__ == "__main__":
    main()
