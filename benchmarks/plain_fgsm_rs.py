"""FGSM-RS training written as a plain PyTorch loop, independent of advcli's training code.

A cross-check for `advcli robust-train` on MNIST at eps 0.3 (the setting of Wong et al., 2020): the
same network (`mnist-small`), data, Adam with a one-cycle learning rate (0 up to --lr at 2/5 of
training, then down to 0, updated every iteration), batches of 100, a uniform random start in the
eps-ball and one signed-gradient step of --alpha, projected back on the ball and on [0, 1]. After
every epoch it prints clean and PGD-10 accuracy (step 2.5·eps/10, random start) on the first
--test-samples test images. If this loop and advcli agree, a result belongs to the recipe, not to
advcli's implementation of it.

    PYTHONPATH=. python benchmarks/plain_fgsm_rs.py --data mnist:../shared/data/mnist --seed 0
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F

from advcli.data import load_dataset
from advcli.models import build_model


def project(x: torch.Tensor, delta: torch.Tensor, eps: float) -> torch.Tensor:
    """`delta` clipped to the eps-ball and so that x + delta stays in [0, 1]."""
    return (x + delta.clamp(-eps, eps)).clamp(0, 1) - x


def pgd_robust(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int = 10) -> torch.Tensor:
    delta = project(x, (torch.rand_like(x) * 2 - 1) * eps, eps)
    for _ in range(steps):
        delta.requires_grad_(True)
        (grad,) = torch.autograd.grad(F.cross_entropy(model(x + delta), y), delta)
        delta = project(x, delta.detach() + 2.5 * eps / steps * grad.sign(), eps)
    with torch.no_grad():
        return (model(x).argmax(1) == y) & (model(x + delta).argmax(1) == y)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="mnist:../shared/data/mnist")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--eps", type=float, default=0.3)
    parser.add_argument("--alpha", type=float, default=0.375)
    parser.add_argument("--lr", type=float, default=0.005)
    parser.add_argument("--test-samples", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    dataset = load_dataset(args.data)
    x, y = dataset.x_train, dataset.y_train
    x_test, y_test = dataset.x_test[:args.test_samples], dataset.y_test[:args.test_samples]
    model = build_model("mnist-small", dataset.input_shape, dataset.num_classes).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    batches = len(x) // 100
    for epoch in range(args.epochs):
        started, order, total_loss = time.perf_counter(), torch.randperm(len(x)), 0.0
        for index in range(batches):
            rows = order[index * 100:(index + 1) * 100]
            xb, yb = x[rows], y[rows]
            progress = epoch + (index + 1) / batches
            lr = float(np.interp(progress, [0, args.epochs * 2 // 5, args.epochs], [0, args.lr, 0]))
            for group in optimizer.param_groups:
                group["lr"] = lr
            delta = project(xb, (torch.rand_like(xb) * 2 - 1) * args.eps, args.eps).requires_grad_(True)
            (grad,) = torch.autograd.grad(F.cross_entropy(model(xb + delta), yb), delta)
            delta = project(xb, delta.detach() + args.alpha * grad.sign(), args.eps)
            loss = F.cross_entropy(model(xb + delta), yb)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total_loss += float(loss.detach())
        model.eval()
        with torch.no_grad():
            clean = float((model(x_test).argmax(1) == y_test).float().mean())
        robust = float(pgd_robust(model, x_test, y_test, args.eps).float().mean())
        model.train()
        print(f"epoch {epoch + 1}  loss {total_loss / batches:.4f}  clean {clean:.4f}  PGD-10 {robust:.4f}  "
              f"{time.perf_counter() - started:.0f} s", flush=True)


if __name__ == "__main__":
    main()
