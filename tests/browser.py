"""Headless Chromium for the report tests: found on PATH, or the tests that need it skip."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Optional

import numpy as np


def chromium() -> Optional[str]:
    return next((found for name in ("chromium", "chromium-browser", "google-chrome") if (found := shutil.which(name))),
                None)


def screenshot(page: Path, shot: Path, *, height: int, width: int = 1200) -> np.ndarray:
    """The page as headless Chromium draws it, in grey levels (rows x columns)."""
    from PIL import Image

    browser = chromium()
    assert browser is not None
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--screenshot={shot}", f"--window-size={width},{height}", page.as_uri()],
                   capture_output=True, timeout=90, check=False)
    assert shot.is_file(), "Chromium wrote no screenshot"
    return np.asarray(Image.open(shot).convert("L"), dtype=np.float32)
