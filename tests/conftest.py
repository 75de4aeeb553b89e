"""Shared fixtures. Tests that need the real data mirror skip, saying why, when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("CFC_BENCH_TEST_MIRROR", REPO.parent / "shared" / "data"))

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="session")
def mirror() -> Path:
    """The offline mirror of the real benchmark data (../shared/data)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(
            f"real data mirror not found at {SHARED_DATA}: these checks run in CI, where "
            "../shared/data sits beside the repository (or set CFC_BENCH_TEST_MIRROR)"
        )
    return SHARED_DATA


@pytest.fixture
def data_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh, empty data root (raw files and caches) for one test."""
    root = tmp_path / "data"
    monkeypatch.setenv("CFC_BENCH_DATA", str(root))
    monkeypatch.delenv("CFC_BENCH_DATA_MIRROR", raising=False)
    return root
