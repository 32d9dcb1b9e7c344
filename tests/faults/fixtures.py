"""Fixtures shared by the fault test modules (import them by name into each module).

``artifacts`` is built once per session whichever module asks first (the builder is memoised);
``world`` gives each test a private copy of the trained run under ``runs/`` and a digest of
everything the test must leave alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from .artifacts import Artifacts, copy_run, one_thread, shared_artifacts
from .contract import changed_paths, tree_digest


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory) -> Artifacts:
    return shared_artifacts(tmp_path_factory)


@dataclass
class World:
    """A test's sandbox: ``runs/good`` (a copy of the shared run) and the shared artifacts beside it."""

    root: Path
    artifacts: Artifacts

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    @property
    def run(self) -> Path:
        return self.runs / "good"

    def snapshot(self) -> dict:
        """Digest of the sandbox and of the shared artifacts (which no test may alter)."""
        return tree_digest(self.root, self.artifacts.root)

    def assert_unchanged(self, before: dict, *, allowed: tuple[Path, ...] = ()) -> None:
        """Nothing changed since `before`, except paths at or under `allowed`."""
        changed = [path for path in changed_paths(before, self.snapshot())
                   if not any(Path(path) == Path(a) or Path(a) in Path(path).parents for a in allowed)]
        assert not changed, f"changed: {changed}"


@pytest.fixture
def world(tmp_path, artifacts) -> World:
    root = tmp_path / "world"
    copy_run(artifacts.run, root / "runs" / "good")
    with one_thread():
        yield World(root=root, artifacts=artifacts)
