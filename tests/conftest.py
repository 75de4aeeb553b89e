"""Shared fixtures. Tests that need the real data mirror skip, saying why, when it is absent."""

from __future__ import annotations

import os
import socket
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


@pytest.fixture
def unreachable_url() -> str:
    """An http:// address on 127.0.0.1 where nothing listens: a network that is not there."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reaches past this machine: internet connections fail as they would offline."""
    connect = socket.socket.connect

    def loopback_only(sock: socket.socket, address):  # type: ignore[no-untyped-def]
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            host = address[0]
            if not (host == "localhost" or host == "::1" or host.startswith("127.")):
                raise OSError(f"tests may not use the network (connection to {address})")
        return connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", loopback_only)
