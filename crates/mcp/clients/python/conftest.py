import pytest


# The SDK runs on anyio; the tests run on its pytest plugin, on asyncio.
@pytest.fixture
def anyio_backend():
    return "asyncio"
