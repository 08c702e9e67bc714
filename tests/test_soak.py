"""The soak (tests/bench/soak.py) for one minute: usage exact through Envoy + filter + control
plane on PostgreSQL, memory flat after the warm-up. `cargo xtask soak` runs it for ten."""

import shutil

import pytest

from bench.soak import check, run

# Not beside other tests (tests/pytest.ini): a minute of wrk load with bounds on admitted requests and memory.
pytestmark = pytest.mark.exclusive

#: Length of the soak inside the test command.
SOAK_SECONDS = 60


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is installed by `cargo xtask test`")
def test_soak_one_minute_usage_exact_memory_flat():
    check(run(SOAK_SECONDS, connections=4, log=lambda line: print(line)))
