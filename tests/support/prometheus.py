"""A real Prometheus server (Debian's `prometheus` package) scraping targets every second, with a
Bearer token, its database in a temp dir; and its HTTP query API."""

import json
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from support.envoy import free_port, stop_process

#: How often Prometheus scrapes (and evaluates); the tests wait in multiples of it.
SCRAPE_INTERVAL_S = 1
READY_TIMEOUT_S = 30


def binary():
    path = shutil.which("prometheus")
    if not path:
        raise RuntimeError("no prometheus binary: apt-get install prometheus (cargo xtask test installs it)")
    return path


class Prometheus:
    """`targets`: [(job, "host:port", bearer token or None, metrics path)]."""

    def __init__(self, targets):
        self.dir = Path(tempfile.mkdtemp(prefix="tollgate-prometheus-"))
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        jobs = []
        for job, target, token, path in targets:
            scrape = {"job_name": job, "metrics_path": path, "static_configs": [{"targets": [target]}]}
            if token:
                # In a file, so the token is not on a command line or in the config Prometheus serves.
                token_file = self.dir / f"{job}.token"
                token_file.write_text(token)
                token_file.chmod(0o600)
                scrape["authorization"] = {"type": "Bearer", "credentials_file": str(token_file)}
            jobs.append(scrape)
        config = {"global": {"scrape_interval": f"{SCRAPE_INTERVAL_S}s", "scrape_timeout": f"{SCRAPE_INTERVAL_S}s",
                             "evaluation_interval": f"{SCRAPE_INTERVAL_S}s"},
                  "scrape_configs": jobs}
        # JSON is YAML: no YAML writer needed.
        self.config_path = self.dir / "prometheus.yml"
        self.config_path.write_text(json.dumps(config))
        self.log_path = self.dir / "prometheus.log"
        self.proc = None

    def start(self):
        log = open(self.log_path, "a")
        self.proc = subprocess.Popen(
            [binary(), f"--config.file={self.config_path}", f"--storage.tsdb.path={self.dir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=log, stderr=subprocess.STDOUT, cwd=self.dir)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prometheus exited {self.proc.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(self.base + "/-/ready", timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"prometheus not ready in {READY_TIMEOUT_S}s:\n{self.log()}")

    def log(self):
        try:
            return self.log_path.read_text()
        except OSError:
            return ""

    def stop(self):
        stop_process(self.proc)
        shutil.rmtree(self.dir, ignore_errors=True)

    def query(self, promql):
        """The instant vector of `promql` now: [(labels, float value)]."""
        url = f"{self.base}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                answer = json.load(r)
        except urllib.error.HTTPError as e:  # a query Prometheus refuses: 400 with the reason
            answer = json.load(e)
        assert answer["status"] == "success", (promql, answer)
        return [(s["metric"], float(s["value"][1])) for s in answer["data"]["result"]]

    def wait_for(self, promql, expected, timeout_s=15):
        """Polls `promql` (one series, e.g. a `sum(...)`) until it equals `expected`; returns the
        last value seen, so the caller's assertion shows it."""
        deadline = time.monotonic() + timeout_s
        last = None
        while True:
            result = self.query(promql)
            last = result[0][1] if len(result) == 1 else result
            if last == expected or time.monotonic() > deadline:
                return last
            time.sleep(SCRAPE_INTERVAL_S / 4)

    def targets(self):
        with urllib.request.urlopen(self.base + "/api/v1/targets", timeout=5) as r:
            return json.load(r)["data"]["activeTargets"]
