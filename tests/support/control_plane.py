"""Starting real `tollgate serve` processes on SQLite or on a fresh PostgreSQL database."""

import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

from support import contract
from support.envoy import free_port, stop_process

ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 30
#: The admin URL of the PostgreSQL server the suite uses (`cargo xtask test` sets it, starting a
#: throwaway cluster when none answers on 127.0.0.1:5432).
POSTGRES_URL = os.environ.get("TOLLGATE_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test")


def binary():
    return os.environ.get("TOLLGATE_BIN") or str(ROOT / "target" / "debug" / "tollgate")


def psql(url, sql):
    subprocess.run(["psql", url, "-v", "ON_ERROR_STOP=1", "-q", "-c", sql], check=True,
                   capture_output=True, text=True, timeout=60)


class Database:
    """A fresh database: a SQLite file in a temp dir, or a new PostgreSQL database (dropped after)."""

    def __init__(self, backend):
        self.backend = backend
        if backend == "sqlite":
            self.dir = tempfile.mkdtemp(prefix="tollgate-db-")
            self.path = os.path.join(self.dir, "tollgate.db")
            self.url = f"sqlite://{self.path}?mode=rwc"
        else:
            self.name = "tg_" + uuid.uuid4().hex[:12]
            psql(POSTGRES_URL, f'CREATE DATABASE "{self.name}"')
            parts = urllib.parse.urlsplit(POSTGRES_URL)
            self.url = urllib.parse.urlunsplit(parts._replace(path="/" + self.name))

    def query(self, sql):
        """Rows of a query as text lines (the suite's view into what was stored)."""
        if self.backend == "sqlite":
            import sqlite3
            with sqlite3.connect(self.path) as c:
                return ["|".join("" if v is None else str(v) for v in row) for row in c.execute(sql)]
        out = subprocess.run(["psql", self.url, "-At", "-c", sql], check=True, capture_output=True,
                             text=True, timeout=60).stdout
        return [line for line in out.splitlines() if line]

    def row_counts(self, exclude=()):
        """{table: row count} of every table but `exclude`, in one query."""
        if self.backend == "postgres":
            # One psql process instead of two (the table list, then the counts): the property
            # tests call this twice per example, and a psql start is most of the cost.
            rows = self.query("SELECT tablename, (xpath('/row/c/text()', query_to_xml("
                              "format('SELECT COUNT(*) AS c FROM public.%I', tablename), false, true, '')))[1]::text "
                              "FROM pg_tables WHERE schemaname = 'public'")
            return {t: c for t, c in (row.split("|") for row in rows) if t not in exclude}
        tables = self.query("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
        union = " UNION ALL ".join(f"SELECT '{t}', COUNT(*) FROM {t}" for t in sorted(tables) if t not in exclude)
        return dict(row.split("|") for row in self.query(union))

    def raw_dump(self):
        """Everything stored, as one string, to prove a secret is not in it."""
        if self.backend == "sqlite":
            data = b""
            for suffix in ("", "-wal"):
                p = self.path + suffix
                if os.path.exists(p):
                    data += Path(p).read_bytes()
            return data.decode("latin-1")
        return subprocess.run(["pg_dump", self.url], check=True, capture_output=True, text=True, timeout=60).stdout

    def drop(self):
        if self.backend == "postgres":
            psql(POSTGRES_URL, f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        else:
            # The file, its WAL and the temp dir: a suite run makes hundreds of them.
            shutil.rmtree(self.dir, ignore_errors=True)


class Server:
    def __init__(self, db, admin_token, extra_env=None):
        self.db = db
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.admin_token = admin_token
        self.log_path = os.path.join(tempfile.mkdtemp(prefix="tollgate-cp-"), "server.log")
        # The daily billing run starts by itself once the UTC hour passes `run_hour_utc` (02:00 by
        # default): a test server runs without it, so what a test counts does not depend on the
        # hour it runs at. Tests of the scheduler turn it on (TOLLGATE_BILLING_SCHEDULER=on).
        self.env = dict(os.environ, TOLLGATE_LISTEN=f"127.0.0.1:{self.port}", TOLLGATE_DATABASE_URL=db.url,
                        TOLLGATE_ADMIN_TOKEN=admin_token, TOLLGATE_BILLING_SCHEDULER="off",
                        TOLLGATE_ALLOW_LOOPBACK_URLS="true")  # localstripe, contract server, proxies
        self.env.update(extra_env or {})
        self.proc = None

    def start(self):
        # Appended: a restarted server's log follows the killed one's (tests read them whole).
        log = open(self.log_path, "a")
        contract.forget(self.base)
        self.proc = subprocess.Popen([binary(), "serve"], env=self.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"tollgate serve exited {self.proc.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(self.base + "/healthz", timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"tollgate serve not ready in {READY_TIMEOUT_S}s:\n{self.log()}")

    def log(self):
        try:
            return Path(self.log_path).read_text()
        except OSError:
            return ""

    def stop(self):
        stop_process(self.proc)

    def kill(self):
        """SIGKILL: no graceful shutdown, no flush, whatever was in flight is cut."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def restart(self):
        """kill -9, then a new process on the same port and database."""
        self.kill()
        return self.start()

    def cli(self, *args, token=None, check=False):
        """Runs the `tollgate` CLI against this server; returns the CompletedProcess."""
        env = dict(self.env, TOLLGATE_URL=self.base, TOLLGATE_TOKEN=token or self.admin_token)
        return subprocess.run([binary(), *args], env=env, capture_output=True, text=True, timeout=60, check=check)


class Api:
    """A tiny JSON client: every call returns (status, body, headers)."""

    def __init__(self, base, token):
        self.base = base
        self.token = token

    def call(self, method, path, body=None, headers=None, token=...):
        data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        req = urllib.request.Request(self.base + path, data=data, method=method)
        tok = self.token if token is ... else token
        if tok:
            req.add_header("Authorization", f"Bearer {tok}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                raw, status, hs = r.read(), r.status, dict(r.headers)
        except urllib.error.HTTPError as e:
            raw, status, hs = e.read(), e.code, dict(e.headers)
        hs = {k.lower(): v for k, v in hs.items()}
        # Every answer is also checked against the server's own /openapi.json (support/contract.py).
        contract.check(self.base, method, path, dict(req.header_items()), status, hs, raw)
        if raw and hs.get("content-type", "").startswith("text/"):
            return status, raw, hs  # CSV exports: the bytes as sent
        return status, (json.loads(raw) if raw else None), hs

    def get(self, path, **kw):
        return self.call("GET", "/admin/api/v1" + path, **kw)

    def post(self, path, body=None, **kw):
        return self.call("POST", "/admin/api/v1" + path, body if body is not None else {}, **kw)

    def patch(self, path, body, **kw):
        return self.call("PATCH", "/admin/api/v1" + path, body, **kw)

    def delete(self, path, **kw):
        return self.call("DELETE", "/admin/api/v1" + path, **kw)

    def ok(self, method, path, body=None, status=None):
        """A call that must succeed; returns the body."""
        fn = {"GET": self.get, "POST": self.post, "PATCH": self.patch, "DELETE": self.delete}[method]
        st, b, _ = fn(path, body) if method in ("POST", "PATCH") else fn(path)
        assert st == (status or (201 if method == "POST" else 200)), (st, b)
        return b
