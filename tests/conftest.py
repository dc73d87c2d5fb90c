"""Shared test set-up: offscreen Qt, isolated settings, paths to real and generated data."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

# Plain widget tests run offscreen; the xvfb test starts its own process on xcb.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# Never read or write the user's real QSettings from tests.
os.environ["ATOMLENS_SETTINGS_DIR"] = tempfile.mkdtemp(prefix="atomlens-settings-")

ROOT = Path(__file__).resolve().parents[1]
REAL_DATA = ROOT.parent / "shared" / "data" / "real"
ARTIFACTS = ROOT / "tests" / "_artifacts"


@pytest.fixture(scope="session")
def real_data() -> Path:
    """Folder of real microscope files (../shared/data/real); skip if it is absent."""
    if not REAL_DATA.is_dir():
        pytest.skip(f"real data folder {REAL_DATA} is absent")
    return REAL_DATA


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """Folder for files tests leave behind to be looked at (screenshots)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
