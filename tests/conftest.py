"""Shared pytest fixtures. Each block below belongs to one part of the suite."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
sys.path.insert(0, str(ROOT))


@pytest.fixture
def fixtures_dir() -> Path:
    return FIXTURES


def is_root() -> bool:
    return os.geteuid() == 0

# ---- postgres fixtures (begin)
# ---- postgres fixtures (end)

# ---- daemontools fixtures (begin)
# ---- daemontools fixtures (end)

# ---- alerts fixtures (begin)
# ---- alerts fixtures (end)
