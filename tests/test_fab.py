"""FAB against its defining properties, and the AutoAttack standard preset built with it.

FAB is a minimum-norm attack built on one operation, the smallest perturbation that reaches a
hyperplane inside the pixel box. On an affine classifier the linearised boundaries are the real ones,
so the smallest adversarial perturbation is known in closed form: FAB must land within its overshoot
(eta = 1.05) of it on the first success, and refine towards it when it keeps searching."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from advcli.attacks import ATTACKS, autoattack_members, boundary_projection, fab, resolve_attack
from advcli.attacks.methods._fab import ETA, fab_run
from advcli.errors import AttackError
from advcli.runtime import predict
from advcli.threat import ThreatModel

DUAL = {"linf": 1.0, "l2": 2.0}


class Affine(nn.Module):
    def __init__(self, classes: int = 4, pixels: int = 64, seed: int = 0) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.linear = nn.Linear(pixels, classes)
        with torch.no_grad():
            self.linear.weight.copy_(torch.randn(classes, pixels, generator=generator))
            self.linear.bias.copy_(torch.randn(classes, generator=generator))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1))


@pytest.fixture
def affine():
    """An affine 4-class model and inputs near mid-grey (the box [0, 1] is out of reach)."""
    model = Affine()
    x = 0.5 + 0.02 * (torch.rand(24, 1, 8, 8, generator=torch.Generator().manual_seed(3)) - 0.5)
    return model, x, predict(model, x)


def boundary_distances(model: Affine, x: torch.Tensor, y: torch.Tensor, norm: str) -> torch.Tensor:
    """Per sample and class, the distance in `norm` to the hyperplane z_k = z_y (inf for k = y)."""
    with torch.no_grad():
        logits = model(x)
    weights = model.linear.weight.detach()
    rows = torch.arange(len(x))
    gaps = (logits - logits[rows, y][:, None]).abs()
    normals = (weights[None] - weights[y][:, None]).norm(p=DUAL[norm], dim=2)
    distance = gaps / normals
    distance[rows, y] = float("inf")
    return distance


def sizes(delta: torch.Tensor, norm: str) -> torch.Tensor:
    flat = delta.flatten(1)
    return flat.abs().amax(1) if norm == "linf" else flat.norm(dim=1)


def smallest_linf_radius(w: torch.Tensor, c: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """An independent answer: the smallest radius r whose box-clipped signed move reaches |c|, by bisection."""
    s = torch.where(c >= 0, 1.0, -1.0)[:, None]
    room = torch.where(w * s > 0, high, -low)
    lo, hi = torch.zeros(len(w)), torch.ones(len(w))
    for _ in range(60):
        mid = (lo + hi) / 2
        reach = (w.abs() * torch.minimum(mid[:, None], room)).sum(1)
        lo, hi = torch.where(reach >= c.abs(), lo, mid), torch.where(reach >= c.abs(), mid, hi)
    return hi


@pytest.fixture
def hyperplanes():
    generator = torch.Generator().manual_seed(5)
    w = torch.randn(300, 40, generator=generator)
    w[:, :5] *= (torch.rand(300, 1, generator=generator) > 0.5)  # some rows with zero weights
    point = torch.rand(300, 40, generator=generator)
    point[:, 5:10] = 1.0  # some coordinates already at the box's edge
    c = torch.randn(300, generator=generator) * 12
    return w, c, -point, 1 - point


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_the_projection_reaches_the_hyperplane_inside_the_box(hyperplanes, norm):
    w, c, low, high = hyperplanes
    d = boundary_projection(w, c, low, high, norm)
    assert (d >= low - 1e-6).all() and (d <= high + 1e-6).all()
    corner = torch.where(w * torch.sign(c)[:, None] > 0, high, low)
    feasible = (w * corner).sum(1).abs() >= c.abs()
    assert 0 < int(feasible.sum()) < len(w), "pick hyperplanes some of which the box cannot reach"
    assert torch.allclose((w * d).sum(1)[feasible], c[feasible], atol=1e-4)
    unreachable = ~feasible  # the corner that comes closest
    assert torch.allclose(d[unreachable] * (w[unreachable] != 0), corner[unreachable] * (w[unreachable] != 0))


def test_the_linf_projection_is_the_smallest(hyperplanes):
    w, c, low, high = hyperplanes
    d = boundary_projection(w, c, low, high, "linf")
    corner = torch.where(w * torch.sign(c)[:, None] > 0, high, low)
    feasible = (w * corner).sum(1).abs() >= c.abs()
    expected = smallest_linf_radius(w, c, low, high)
    assert torch.allclose(d.abs().amax(1)[feasible], expected[feasible], atol=1e-5)


def test_the_l2_projection_is_the_smallest(hyperplanes):
    w, c, low, high = hyperplanes
    far = torch.full_like(low, 1e6)
    free = boundary_projection(w, c, -far, far, "l2")  # no box: the closed form
    assert torch.allclose(free, c[:, None] * w / (w ** 2).sum(1, keepdim=True), atol=1e-5)
    d = boundary_projection(w, c, low, high, "l2")
    corner = torch.where(w * torch.sign(c)[:, None] > 0, high, low)
    feasible = (w * corner).sum(1).abs() >= c.abs()
    # KKT: one multiplier for every coordinate strictly inside the box, the rest at a bound
    inside = (d > low + 1e-6) & (d < high - 1e-6) & (w.abs() > 1e-3)
    ratio = d / w
    spread = (torch.where(inside, ratio, -torch.inf).amax(1) - torch.where(inside, ratio, torch.inf).amin(1))[feasible]
    assert spread[inside[feasible].sum(1) > 1].abs().max() < 1e-4


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_fab_lands_within_its_overshoot_of_the_smallest_adversarial(affine, norm):
    model, x, y = affine
    smallest = boundary_distances(model, x, y, norm).min(1).values
    x_adv = fab(model, x, y, eps=10.0 if norm == "l2" else 1.0, norm=norm, iters=20)
    found = sizes(x_adv - x, norm)
    assert (predict(model, x_adv) != y).all()
    assert (found >= smallest * (1 - 1e-4)).all() and (found <= ETA * smallest * (1 + 1e-4)).all()


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_fab_refines_towards_the_smallest_adversarial_when_it_keeps_searching(affine, norm):
    model, x, y = affine
    smallest = boundary_distances(model, x, y, norm).min(1).values
    _, found = fab_run(model, x, y, None, threat=ThreatModel(1e-9, norm, True), iters=100, start=x)
    assert (found >= smallest * (1 - 1e-4)).all() and (found <= smallest * 1.01).all()


def test_fab_t_steps_towards_its_target(affine):
    model, x, y = affine
    distances = boundary_distances(model, x, y, "linf")
    target = distances.argsort(1)[:, 1]  # the second-nearest boundary, not the one untargeted FAB takes
    x_adv = fab(model, x, y, eps=1.0, iters=20, target=target)
    found = sizes(x_adv - x, "linf")
    assert (predict(model, x_adv) != y).all()
    aimed = distances.gather(1, target[:, None]).squeeze(1)
    assert (found <= ETA * aimed * (1 + 1e-4)).all() and (found >= distances.min(1).values * (1 - 1e-4)).all()
    assert (found > ETA * distances.min(1).values * 1.001).any()  # it did not take the nearest boundary


def test_fab_reports_nothing_beyond_eps_and_restarts_only_add(affine):
    model, x, y = affine
    smallest = boundary_distances(model, x, y, "linf").min(1).values
    eps = float(smallest.median())
    one = fab(model, x, y, eps=eps, iters=20)
    fooled = predict(model, one) != y
    assert (sizes(one - x, "linf") <= eps + 1e-6).all()
    assert torch.equal(one[~fooled], x[~fooled])  # not found within eps: the input, untouched
    assert fooled[ETA * smallest < eps * 0.999].all() and not fooled[smallest > eps].any()

    def random_starts(restarts: int) -> torch.Tensor:
        x_adv = fab(model, x, y, eps=eps, iters=5, restarts=restarts, init="random",
                    generator=torch.Generator().manual_seed(0))
        assert (sizes(x_adv - x, "linf") <= eps + 1e-6).all()
        return predict(model, x_adv) != y

    single, several = random_starts(1), random_starts(4)
    assert (several >= single).all()  # the same first start, then more chances


def test_fab_refuses_an_alpha_max_above_one(affine):
    model, x, y = affine
    with pytest.raises(AttackError, match="alpha_max"):
        fab(model, x, y, eps=0.1, alpha_max=1.5)


@pytest.mark.parametrize("classes, targets, loss", [(10, 9, "apgd-dlr"), (4, 3, "apgd-dlr"), (3, 2, "apgd-ce")])
def test_the_autoattack_preset_is_autoattacks_standard_set(classes, targets, loss):
    config = resolve_attack("autoattack", eps=8 / 255)
    members = autoattack_members(config, classes)
    assert [(m.name, m.target) for m in members] == [
        ("apgd-ce", None), *((loss, f"top-{k}") for k in range(1, targets + 1)),
        *(("fab", f"top-{k}") for k in range(1, targets + 1)), ("square", None)]
    assert all(m.iters == 100 and m.restarts == 1 for m in members[:-1])
    assert members[-1].iters == 5000 and config.queries == 5000
    assert all(m.eps == 8 / 255 and m.norm == "linf" for m in members)
    assert ATTACKS["autoattack"].kind == "ensemble" and resolve_attack("auto", eps=0.1).queries == 1000


def test_a_bim_only_report_says_it_overestimates_and_names_auto(trained_run):
    import json

    from typer.testing import CliRunner

    from advcli.cli import app

    result = CliRunner().invoke(app, ["eval", "--model", str(trained_run), "--samples", "20", "--sanity-samples", "0",
                                      "--device", "cpu", "--json", "--quiet"])
    assert result.exit_code == 0, result.output
    (note,) = json.loads(result.stdout)["notes"]
    assert note.startswith("BIM-20 overestimates robustness") and "--attack auto" in note and "\n" not in note
    assert f"note: {note}" in " ".join(result.stderr.split())
    stronger = CliRunner().invoke(app, ["eval", "--model", str(trained_run), "--attack", "auto", "--attack", "bim",
                                        "--iters", "5", "--queries", "20", "--samples", "20", "--sanity-samples", "0",
                                        "--device", "cpu", "--json", "--quiet"])
    assert stronger.exit_code == 0, stronger.output
    assert json.loads(stronger.stdout)["notes"] == []
