"""Test configuration shared by every test module.

* float64 is enabled for the suite so golden tests compare against float64 references; tests of
  float32 behaviour build float32 arrays explicitly (the library follows the input dtype).
* hypothesis runs under the ``ci`` profile: derandomized, no deadline, bounded examples.
* ``gpu`` tests are skipped where JAX sees no GPU.
* JAX's compiled programs are dropped after each test module. Every XLA:CPU executable keeps
  a few memory mappings of JIT code alive while it is cached, and the whole suite in one process
  compiles enough distinct programs to approach the kernel's per-process map limit
  (``vm.max_map_count``, 65530 by default), where the next compilation crashes.
"""

from __future__ import annotations

import os

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

jax.config.update("jax_enable_x64", True)

settings.register_profile(
    "ci",
    derandomize=True,
    deadline=None,
    max_examples=15,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
settings.register_profile("dev", deadline=None, max_examples=50)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def _has_gpu() -> bool:
    try:
        return any(d.platform == "gpu" for d in jax.devices())
    except RuntimeError:
        return False


def pytest_collection_modifyitems(config, items):
    if _has_gpu():
        return
    skip = pytest.mark.skip(reason="needs a GPU (JAX sees none)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True, scope="module")
def _drop_compiled_programs():
    yield
    jax.clear_caches()


@pytest.fixture
def rng():
    return np.random.default_rng(0)
