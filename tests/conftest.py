"""Shared pytest fixtures: where the real tiles live, and how their absence is treated."""
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def pytest_configure(config):
    config.addinivalue_line("markers", "browser: real-browser test (JupyterLab in headless Chromium)")
    config.addinivalue_line("markers", "slow: long-running test")


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def shared_roads() -> Path:
    """Path of `../shared/data/roads`; a failure under CI=true when missing, a skip elsewhere."""
    root = Path(os.environ.get("ROADGIE_SHARED", REPO.parent / "shared")) / "data" / "roads"
    if not (root / "tiles.csv").exists():
        msg = f"shared road tiles not found at {root} (expected ../shared/data/roads beside the repo)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    return root
