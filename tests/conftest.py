"""Shared fixtures: the tiny hand-written log, a throwaway workspace, the real-data folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

TESTS = Path(__file__).resolve().parent
TINY_LOGS = TESTS / "data" / "tiny_logs.csv"
RAW = Path(os.environ.get("TOOLKIT_RAW_DATA", TESTS.parent.parent / "shared" / "data" / "raw"))

settings.register_profile("ci", max_examples=100, deadline=None, derandomize=True)  # CI: the same examples every run
settings.register_profile("dev", max_examples=200, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


@pytest.fixture(autouse=True)
def _workspace_env(tmp_path, monkeypatch):
    """Every test gets its own workspace; nothing leaks into ./toolkit-workspace."""
    monkeypatch.setenv("TOOLKIT_WORKSPACE", str(tmp_path / "ws"))
    monkeypatch.setenv("TOOLKIT_HOME", str(tmp_path))


@pytest.fixture
def tiny_logs() -> Path:
    return TINY_LOGS


@pytest.fixture
def raw_data() -> Path:
    """The real logs beside the checkout; tests needing them skip with the reason when absent."""
    if not RAW.is_dir():
        pytest.skip(f"real listening logs not found at {RAW} (set TOOLKIT_RAW_DATA to their folder)")
    return RAW
