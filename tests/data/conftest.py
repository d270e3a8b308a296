import pytest


@pytest.fixture(scope="session")
def digits_dir(tmp_path_factory):
    """One digits data dir shared by all xdist workers of this session (exercises the lock)."""
    return str(tmp_path_factory.getbasetemp().parent / "digits_data")
