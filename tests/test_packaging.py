"""Packaging contracts: one onnxruntime flavour on every platform, every dependency pinned for CI,
and a license that builds without warnings."""

from __future__ import annotations

from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+
from packaging.markers import default_environment  # noqa: E402
from packaging.requirements import Requirement  # noqa: E402
from packaging.version import Version  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
REQUIREMENTS = [Requirement(line) for line in PYPROJECT["project"]["dependencies"]]

# (platform_system, platform_machine, sys_platform) -> whether onnxruntime-gpu publishes wheels there
PLATFORMS = {
    ("Linux", "x86_64", "linux"): True,
    ("Windows", "AMD64", "win32"): True,
    ("Linux", "aarch64", "linux"): False,
    ("Darwin", "arm64", "darwin"): False,
    ("Darwin", "x86_64", "darwin"): False,
    ("Windows", "ARM64", "win32"): False,
}


@pytest.mark.parametrize("system, machine, sys_platform", list(PLATFORMS))
def test_exactly_one_onnxruntime_per_platform(system, machine, sys_platform):
    environment = {**default_environment(), "platform_system": system, "platform_machine": machine,
                   "sys_platform": sys_platform}
    chosen = [r.name for r in REQUIREMENTS if r.name.startswith("onnxruntime")
              and (r.marker is None or r.marker.evaluate(environment))]
    expected = "onnxruntime-gpu" if PLATFORMS[(system, machine, sys_platform)] else "onnxruntime"
    assert chosen == [expected]


def test_constraints_pin_every_runtime_and_test_dependency():
    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            requirement = Requirement(line)
            (specifier,) = requirement.specifier
            assert specifier.operator == "==", line
            pins[requirement.name.lower()] = Version(specifier.version)
    wanted = REQUIREMENTS + [Requirement(r) for r in PYPROJECT["project"]["optional-dependencies"]["test"]]
    for requirement in wanted:
        assert requirement.name.lower() in pins, f"{requirement.name} is not pinned in constraints.txt"
        assert requirement.specifier.contains(pins[requirement.name.lower()]), requirement


def test_license_is_an_spdx_expression_with_its_file():
    project = PYPROJECT["project"]
    assert project["license"] == "MIT"
    assert all((REPO / name).is_file() for name in project["license-files"])
    assert not any(c.startswith("License ::") for c in project.get("classifiers", []))
    (setuptools,) = [Requirement(r) for r in PYPROJECT["build-system"]["requires"] if r.startswith("setuptools")]
    assert not setuptools.specifier.contains("76.1.0") and setuptools.specifier.contains("77.0.3")
