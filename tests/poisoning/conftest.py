"""Tiny real data for the pipeline tests (tests.poisoning.helpers.write_tiny_digits), made once per session."""
import pytest

from tests.poisoning.helpers import write_tiny_digits


@pytest.fixture(scope="session")
def tiny_npz(tmp_path_factory):
    return write_tiny_digits(tmp_path_factory.mktemp("data") / "tiny_digits.npz")
