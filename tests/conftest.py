import os

import pytest

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    """One data/teacher cache for the whole session (tests reuse prepared data like trials do)."""
    return str(tmp_path_factory.mktemp("mmpkd_cache"))


TINY_DATA = dict(n_train=120, n_val=40, n_test=40, image_size=32, seed=0)
