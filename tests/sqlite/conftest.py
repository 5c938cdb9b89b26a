"""The embedded default: the same ledger code on a fresh SQLite file per test, no server needed.

Jobs are applied by calling the write side directly, one transaction each;
queue behaviour is tested against the real broker in tests/integration.
"""

import pytest

from rewards.db import make_engine
from rewards.models import metadata


@pytest.fixture
def sqlite_engine(tmp_path):
    """A fresh SQLite file with the schema the models describe."""
    engine = make_engine(f"sqlite:///{tmp_path / 'rewards.sqlite3'}")
    metadata.create_all(engine)
    yield engine
    engine.dispose()
