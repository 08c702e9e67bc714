import hashlib
import http.client
import json
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from support.envoy import SHELLS, Envoy, bootstrap, free_port, tollgate_filter  # noqa: E402
from support.control_plane import Database, Server  # noqa: E402
from support.upstream import Upstream  # noqa: E402
from support import contract  # noqa: E402

#: The bootstrap admin token every test server starts with (TOLLGATE_ADMIN_TOKEN).
ADMIN_TOKEN = "test-admin-" + __import__("secrets").token_hex(16)


def pytest_configure(config):
    # One log of contract mismatches per run (support/contract.py); xdist workers append to the
    # controller's.
    if not hasattr(config, "workerinput"):
        contract.log_path().unlink(missing_ok=True)


def pytest_terminal_summary(terminalreporter):
    lines = contract.summary()
    if lines:
        terminalreporter.section("contract mismatches (support/contract.py)")
        for line in lines:
            terminalreporter.write_line(line)


@pytest.fixture(params=["sqlite", "postgres"])
def server(request):
    """A real `tollgate serve` on a fresh database, once per backend."""
    db = Database(request.param)
    srv = Server(db, ADMIN_TOKEN).start()
    yield srv
    srv.stop()
    db.drop()


def sha256_hex(key):
    return hashlib.sha256(key.encode()).hexdigest()


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def header(self, name):
        values = self.headers.get(name.lower())
        return values[0] if values else None

    def json(self):
        return json.loads(self.body)


def call(port, path="/", method="GET", headers=None, timeout=10):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, headers=headers or {})
        r = conn.getresponse()
        body = r.read()
        hs = {}
        for k, v in r.getheaders():
            hs.setdefault(k.lower(), []).append(v)
        return Response(r.status, hs, body)
    finally:
        conn.close()


@pytest.fixture
def upstream():
    up = Upstream().start()
    yield up
    up.stop()


@pytest.fixture(params=SHELLS)
def shell(request):
    """Each filter test runs against both shells: the wasm module and the native dynamic module."""
    return request.param


@pytest.fixture
def start_envoy(upstream, shell):
    """Starts Envoy with the filter (of `shell`) configured by `plugin_config`; stops them all
    afterwards."""
    started = []

    def start(plugin_config, concurrency=2, expect_ready=True):
        config = bootstrap(free_port(), free_port(), upstream.port, [tollgate_filter(plugin_config, shell)])
        envoy = Envoy(config, concurrency=concurrency, shell=shell)
        started.append(envoy)
        return envoy.start(expect_ready=expect_ready)

    yield start
    for e in started:
        e.stop()
