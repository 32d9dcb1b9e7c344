"""The shareable report: its sections follow its data, every user string is escaped, the HTML is
self-contained, and a real browser draws it. Fixtures come from a tiny model trained here."""

from __future__ import annotations

import ast
import base64
import copy
import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest
from browser import chromium, screenshot

import advcli
from advcli.reporting import (
    ReportInputs,
    build_report,
    load_report_inputs,
    render_html,
    render_markdown,
    write_html_report,
    write_markdown_report,
)
from advcli.reporting.document import ExampleGrid

REPO = Path(__file__).resolve().parents[1]
ALL_SECTIONS = ["model-card", "training", "accuracy", "robustness-curve", "per-class", "sanity", "verification",
                "examples"]
TITLES = {"model-card": "Model card", "training": "Training", "accuracy": "Clean and robust accuracy",
          "robustness-curve": "Robustness curve", "per-class": "Per-class accuracy", "sanity": "Sanity checks",
          "verification": "Verification", "examples": "Adversarial examples"}
HOSTILE = ["<script>alert(1)</script>", "[/]", "$x$", "a\x00b\x1b[31mred", "\u202eevil", "**bold**",
           "| pipe |", "<img src=x onerror=alert(2)>", "line\nbreak", "@team :smile: http://x.test"]


@pytest.fixture(scope="module")
def fixture_run(tmp_path_factory, tiny_npz, tiny_dataset):
    """A tiny model trained 2 epochs, its evaluation (2 radii, per-class, sanity checks) and two
    attack files (untargeted and targeted)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("report")
    path, _ = advcli.train(data=f"npz:{tiny_npz}", epochs=2, arch="mnist-small", device="cpu",
                           out=folder / "run", dataset=tiny_dataset)
    run = advcli.load_run(path)
    evaluation = advcli.evaluate(run=run, dataset=tiny_dataset, attacks=("fgsm", "bim"), eps=(0.05, 0.1),
                                 samples=60, per_class=True, sanity_samples=20, device="cpu").to_dict()
    untargeted = advcli.craft(run=run, dataset=tiny_dataset, attack="bim", eps=0.1, iters=5, samples=6,
                              out=str(folder / "bim.npz"), device="cpu")
    targeted = advcli.craft(run=run, dataset=tiny_dataset, attack="bim", eps=0.1, iters=5, samples=5, target="3",
                            out=str(folder / "bim-to-3.npz"), device="cpu")
    torch.set_num_threads(threads)
    return {"path": path, "evaluation": evaluation, "untargeted": untargeted.path, "targeted": targeted.path,
            "folder": folder}


def verification_for(evaluation: dict, *, above: bool = False, method: str = "ibp") -> dict:
    """Verification rows at the evaluation's radii, certified just under (or above) the attacks' figure."""
    rows = []
    for point in evaluation["curve"]:
        certified = min(1.0, point["robust_accuracy"] + 0.05) if above else point["robust_accuracy"] / 2
        rows.append({"eps": point["eps"], "certified_accuracy": certified, "verified": 0.5, "violated": 0.3,
                     "unproven": 0.2})
    return {"method": method, "norm": evaluation["norm"], "samples": evaluation["samples"], "seconds": 1.5,
            "results": rows}


@pytest.fixture(scope="module")
def full_inputs(fixture_run) -> ReportInputs:
    inputs = load_report_inputs(fixture_run["path"], examples=fixture_run["targeted"])
    return dataclasses.replace(inputs, evaluation=fixture_run["evaluation"],
                               verification=verification_for(fixture_run["evaluation"]))


def section_keys_in_html(page: str) -> list[str]:
    return re.findall(r'<section id="section-([a-z-]+)">', page)


def section_titles_in_markdown(text: str) -> list[str]:
    return re.findall(r"^## (.+)$", text, flags=re.MULTILINE)


def single_eps(evaluation: dict) -> dict:
    """The evaluation cut to its largest radius (one point: no curve to draw)."""
    cut = copy.deepcopy(evaluation)
    cut["curve"], cut["eps"] = cut["curve"][-1:], cut["eps"][-1:]
    for row in cut.get("per_class", []):
        row["curve"] = row["curve"][-1:]
    return cut


@pytest.mark.parametrize("parts, expected", [
    ((), ["model-card"]),
    (("history",), ["model-card", "training"]),
    (("history", "evaluation"), ["model-card", "training", "accuracy", "robustness-curve", "per-class", "sanity"]),
    (("single-eps",), ["model-card", "accuracy", "per-class", "sanity"]),
    (("no-per-class",), ["model-card", "accuracy", "robustness-curve", "sanity"]),
    (("verification",), ["model-card", "verification"]),
    (("examples",), ["model-card", "examples"]),
    (("history", "evaluation", "verification", "examples"), ALL_SECTIONS),
])
def test_each_section_is_present_exactly_when_its_data_is(fixture_run, full_inputs, parts, expected):
    evaluation = fixture_run["evaluation"]
    if "single-eps" in parts:
        evaluation = single_eps(evaluation)
    elif "no-per-class" in parts:
        evaluation = {k: v for k, v in evaluation.items() if k != "per_class"}
    inputs = ReportInputs(
        model=full_inputs.model,
        history=full_inputs.history if "history" in parts else (),
        evaluation=evaluation if {"evaluation", "single-eps", "no-per-class"} & set(parts) else None,
        verification=full_inputs.verification if "verification" in parts else None,
        examples=full_inputs.examples if "examples" in parts else None,
    )
    report = build_report(inputs)
    assert [s.key for s in report.sections] == expected
    page = render_html(report)
    assert section_keys_in_html(page) == expected
    text, _ = render_markdown(report, "files")
    assert section_titles_in_markdown(text) == [TITLES[key] for key in expected]


def test_figures_come_from_the_inputs(fixture_run, full_inputs):
    report = build_report(full_inputs)
    accuracy = report.section("accuracy").blocks[0]
    assert accuracy.headers == ["eps", "fgsm", "bim", "worst case"]
    worst = [point["robust_accuracy"] for point in fixture_run["evaluation"]["curve"]]
    assert [row[-1].text for row in accuracy.rows[1:]] == [f"{100 * w:.1f}%" for w in worst]
    assert report.headlines[0].value == f"{100 * fixture_run['evaluation']['clean_accuracy']:.1f}%"
    sanity = report.section("sanity").blocks[-1]
    assert [row[0].text for row in sanity.rows] == [c["name"] for c in fixture_run["evaluation"]["sanity"]]


def test_hostile_class_names_and_paths_are_escaped(full_inputs):
    model = copy.deepcopy(dict(full_inputs.model))
    model["data"]["spec"] = "npz:/tmp/<script>evil()</script>.npz"
    verification = dict(full_inputs.verification, method="ibp $\\frac{1}{0}$ <b>")
    inputs = dataclasses.replace(full_inputs, model=model, class_names=HOSTILE, verification=verification)
    report = build_report(inputs)
    page = render_html(report)
    text, _ = render_markdown(report, "files")
    for output in (page, text):
        assert "<script" not in output and "<img src=x" not in output
        assert not re.search(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u202e]", output)
        assert "&lt;script&gt;" in output and "&lt;b&gt;" in output
    assert "<b>" not in text
    assert "[/]" in page and "$x$" in page                         # HTML shows them as text
    assert "\\[/\\]" in text and "[/]" not in text                 # Markdown: no link syntax left
    assert "<span>$</span>x<span>$</span>" in text and "$x$" not in text
    assert "\\*\\*bold\\*\\*" in text and "\\| pipe \\|" in text and "\\@team" in text and "http\\://" in text


def test_hostile_names_render_as_plain_text_in_a_markdown_parser(full_inputs):
    """Through a real CommonMark parser (markdown-it, with tables and raw HTML on, as GitHub has them),
    every hostile name comes out as its own characters and makes no element."""
    from markdown_it import MarkdownIt

    inputs = dataclasses.replace(full_inputs, class_names=HOSTILE)
    text, _ = render_markdown(build_report(inputs), "files")
    rendered = MarkdownIt("commonmark", {"html": True}).enable("table").render(text)
    assert "<script" not in rendered and "<img src=x" not in rendered and "<a " not in rendered
    assert "<strong>bold</strong>" not in rendered and "**bold**" in rendered
    for name in ("[/]", "| pipe |", "&lt;script&gt;alert(1)"):
        assert name in rendered
    cards = len(next(b for b in build_report(inputs).section("examples").blocks if isinstance(b, ExampleGrid)).cards)
    assert rendered.count('<td><img src="files/example-') == cards  # each strip in its own cell of an intact table


def test_html_is_self_contained(full_inputs):
    page = render_html(build_report(full_inputs))
    assert "http://" not in page and "https://" not in page
    assert not re.search(r"<script|<link|<iframe|<object|<embed|@import|url\(", page, flags=re.IGNORECASE)
    sources = re.findall(r'src="([^"]*)"', page)
    assert sources and all(src.startswith("data:image/png;base64,") for src in sources)
    for src in sources:
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert not re.findall(r'href="(?!#section-)', page)


def test_markdown_twin_links_its_images_or_says_they_are_left_out(tmp_path, full_inputs):
    report = build_report(full_inputs)
    path = write_markdown_report(report, tmp_path / "report.md")
    text = path.read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert links and all(link.startswith("report_files/") for link in links)
    for link in links:
        assert (tmp_path / link).read_bytes()[:4] == b"\x89PNG"
    assert sorted(p.name for p in (tmp_path / "report_files").iterdir()) == sorted(Path(l).name for l in links)
    bare = write_markdown_report(report, tmp_path / "bare.md", images=False).read_text()
    assert "Images are left out" in bare and "![" not in bare and not (tmp_path / "bare_files").exists()


def test_example_cards_mark_right_and_wrong_and_the_target(fixture_run, full_inputs):
    arrays = advcli.reporting.load_examples(fixture_run["targeted"])
    grid = next(b for b in build_report(full_inputs).section("examples").blocks if isinstance(b, ExampleGrid))
    labels, adversarial = arrays["labels"], arrays["adversarial_predictions"]
    assert [card.adversarial_correct for card in grid.cards] == list(adversarial == labels)
    assert [card.index for card in grid.cards] == list(arrays["indices"])
    assert all(card.target == "3" for card in grid.cards)
    largest = float(np.max(np.abs(arrays["adversarials"] - arrays["originals"])))
    assert grid.magnification == max(1, round(0.5 / largest))
    page = render_html(build_report(full_inputs))
    assert page.count('class="sym good">✓') + page.count('class="sym bad">✗') == 2 * len(grid.cards)
    assert f"perturbation ×{grid.magnification}" in page


def test_results_of_other_weights_are_refused(full_inputs):
    other = dict(full_inputs.evaluation, model_fingerprint="sha256:" + "0" * 64)
    with pytest.raises(advcli.AdvcliError, match="evaluation is of other weights"):
        build_report(dataclasses.replace(full_inputs, evaluation=other))
    exported = dict(other, backend="onnxruntime")
    card = build_report(dataclasses.replace(full_inputs, evaluation=exported)).section("model-card")
    assert any("not checked here" in getattr(block, "text", "") for block in card.blocks)


@pytest.mark.parametrize("change, message", [
    ({"method": None}, "lacks 'method'"),
    ({"samples": 0}, "samples >= 1"),
    ({"results": []}, "non-empty list"),
    ({"results": [{"eps": 0.1, "certified_accuracy": 1.5, "verified": 1, "violated": 0, "unproven": 0}]}, r"\[0, 1\]"),
    ({"results": [{"eps": 0.1, "certified_accuracy": 0.5, "verified": 0.5, "violated": 0.1, "unproven": 0.1}]},
     "not 1"),
    ({"results": [{"eps": 0.1, "certified_accuracy": 0.5, "verified": 1, "violated": 0, "unproven": 0}] * 2},
     "same eps"),
])
def test_malformed_verification_is_refused(full_inputs, change, message):
    verification = {**full_inputs.verification, **change}
    with pytest.raises(advcli.AdvcliError, match=message):
        build_report(dataclasses.replace(full_inputs, verification=verification))


def test_certified_above_attacked_is_flagged(fixture_run, full_inputs):
    sound = build_report(full_inputs).section("verification")
    assert not [b for b in sound.blocks if type(b).__name__ == "Notice"]
    unsound = dataclasses.replace(full_inputs, verification=verification_for(fixture_run["evaluation"], above=True))
    notices = [b for b in build_report(unsound).section("verification").blocks if type(b).__name__ == "Notice"]
    assert len(notices) == len(fixture_run["evaluation"]["curve"])
    assert all("exceeds the attack-measured" in n.text for n in notices)


def test_writes_refuse_to_overwrite_and_leave_no_temp_files(tmp_path, full_inputs):
    report = build_report(full_inputs)
    path = write_html_report(report, tmp_path / "r.html")
    with pytest.raises(advcli.AdvcliError, match="already exists"):
        write_html_report(report, path)
    path.write_text("old")
    write_html_report(report, path, overwrite=True)
    assert path.read_text().startswith("<!DOCTYPE html>")
    write_markdown_report(report, tmp_path / "r.md")
    write_markdown_report(report, tmp_path / "r.md", overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.html", "r.md", "r_files"]


def test_untargeted_examples_and_reading_from_disk(fixture_run, tmp_path):
    inputs = load_report_inputs(fixture_run["path"], examples=fixture_run["untargeted"])
    report = build_report(inputs)
    text, _ = render_markdown(report, "f")
    header = next(line for line in text.splitlines() if line.startswith("| \\# |"))
    assert "target" not in header and "true label" in header
    assert [s.key for s in report.sections] == ["model-card", "training", "examples"]


def test_reporting_is_library_code():
    """No typer or rich anywhere; matplotlib only inside functions (imported when a plot is drawn)."""
    for path in (REPO / "advcli" / "reporting").glob("*.py"):
        tree = ast.parse(path.read_text())
        everywhere = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                      for alias in node.names}
        everywhere |= {node.module.split(".")[0] for node in ast.walk(tree)
                       if isinstance(node, ast.ImportFrom) and node.module}
        top = {alias.name.split(".")[0] for node in tree.body if isinstance(node, ast.Import) for alias in node.names}
        top |= {node.module.split(".")[0] for node in tree.body if isinstance(node, ast.ImportFrom) and node.module}
        assert not everywhere & {"typer", "rich"}, path.name
        assert "matplotlib" not in top, path.name


@pytest.mark.skipif(chromium() is None, reason="no headless Chromium installed")
def test_a_real_browser_draws_the_report(tmp_path, full_inputs):
    page = write_html_report(build_report(full_inputs), tmp_path / "report.html")
    pixels = screenshot(page, tmp_path / "shot.png", height=3000)
    assert pixels.shape == (3000, 1200)
    assert pixels.std() > 20                       # not a blank page
    assert (pixels < 128).mean() > 0.01            # dark text and figures cover part of it
    assert (pixels[:400] < 128).mean() > 0.005     # the headline figures are drawn at the top


@pytest.mark.parametrize("channels", [1, 3])
def test_example_panels_show_the_change_magnified(channels):
    """Grey where nothing changed, lighter where the attack brightened, for gray and colour images."""
    import io

    from PIL import Image

    from advcli.reporting.figures import example_pngs

    original = np.full((channels, 8, 8), 0.5, dtype=np.float32)
    adversarial = original.copy()
    adversarial[:, 0, 0] += 0.1
    clean_png, _, perturbation_png, strip_png = example_pngs(original, adversarial, factor=5)
    perturbation = np.asarray(Image.open(io.BytesIO(perturbation_png)).convert("L"), dtype=np.int32)
    scale = perturbation.shape[0] // 8
    assert perturbation.shape == (8 * scale, 8 * scale) and scale > 1
    assert perturbation[0, 0] == 255 and perturbation[-1, -1] in (127, 128)  # 0.5 + 5 * 0.1 = 1.0; 0.5: no change
    assert Image.open(io.BytesIO(clean_png)).mode == ("L" if channels == 1 else "RGB")
    assert Image.open(io.BytesIO(strip_png)).size[0] > 3 * 8 * scale
