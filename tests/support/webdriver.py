"""Debian's headless Chromium driven through chromedriver with the W3C WebDriver protocol (plain
JSON over HTTP on loopback, so no client library to pin). Just what the portal tests use: open a
page, find elements, type, click, read text, run a script, take a screenshot.

Chromium runs with the flags this machine kind needs (no sandbox as root, no GPU, no background
networking: the machine has no outside network)."""

import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request

from support.envoy import free_port, stop_process

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
#: Longest wait for chromedriver to listen, and for one element or condition in a page.
START_TIMEOUT_S = 20
WAIT_TIMEOUT_S = 15
#: Every WebDriver command answers within this (a page load included).
COMMAND_TIMEOUT_S = 60
CHROMIUM_FLAGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--window-size=1280,1000",
]
ELEMENT = "element-6066-11e4-a52e-4f735466cecf"


class WebDriverError(RuntimeError):
    pass


class Chromium:
    def __init__(self, screenshot_dir):
        self.port = free_port()
        self.profile = tempfile.mkdtemp(prefix="tollgate-chromium-")
        self.log_path = os.path.join(self.profile, "chromedriver.log")
        self.screenshot_dir = screenshot_dir
        self.proc = None
        self.session = None

    def start(self):
        self.proc = subprocess.Popen(
            [CHROMEDRIVER, f"--port={self.port}", "--allowed-ips=127.0.0.1", f"--log-path={self.log_path}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                if self._call("GET", "/status")["ready"]:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise WebDriverError("chromedriver did not start")
            time.sleep(0.1)
        caps = {"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": CHROMIUM,
                                   "args": CHROMIUM_FLAGS + [f"--user-data-dir={self.profile}/data"]},
            # The console is kept, so a test can see what the page reported (CSP violations).
            "goog:loggingPrefs": {"browser": "ALL"},
        }}}
        self.session = self._call("POST", "/session", caps)["sessionId"]
        return self

    def stop(self):
        if self.session:
            try:
                self._call("DELETE", f"/session/{self.session}")
            except (OSError, WebDriverError):
                pass
        if self.proc:
            stop_process(self.proc)
        shutil.rmtree(self.profile, ignore_errors=True)

    def _call(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=COMMAND_TIMEOUT_S) as r:
                value = json.loads(r.read())["value"]
        except urllib.error.HTTPError as e:
            value = json.loads(e.read()).get("value", {})
            raise WebDriverError(f"{method} {path}: {value.get('error')}: {value.get('message', '')[:500]}")
        return value

    def _s(self, method, path, body=None):
        return self._call(method, f"/session/{self.session}{path}", body)

    # ---- pages ----

    def open(self, url):
        self._s("POST", "/url", {"url": url})

    @property
    def url(self):
        return self._s("GET", "/url")

    def title(self):
        return self._s("GET", "/title")

    def source(self):
        return self._s("GET", "/source")

    def script(self, js, *args):
        return self._s("POST", "/execute/sync", {"script": js, "args": list(args)})

    def console(self):
        """The browser console's entries since the last call, as {"level", "message", ...}
        (chromedriver's log command): a blocked script or style is reported there."""
        return self._s("POST", "/se/log", {"type": "browser"})

    def text(self):
        return self.script("return document.body.innerText")

    def screenshot(self, name):
        os.makedirs(self.screenshot_dir, exist_ok=True)
        path = os.path.join(self.screenshot_dir, f"{name}.png")
        with open(path, "wb") as f:
            f.write(base64.b64decode(self._s("GET", "/screenshot")))
        return path

    # ---- elements ----

    def find(self, css, timeout=WAIT_TIMEOUT_S):
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self._s("POST", "/element", {"using": "css selector", "value": css})[ELEMENT]
            except WebDriverError:
                if time.monotonic() > deadline:
                    raise WebDriverError(f"no element {css!r} on {self.url}:\n{self.text()[:2000]}")
                time.sleep(0.1)

    def find_all(self, css):
        return [e[ELEMENT] for e in self._s("POST", "/elements", {"using": "css selector", "value": css})]

    def type(self, css, text, clear=True):
        el = self.find(css)
        if clear:
            self._s("POST", f"/element/{el}/clear", {})
        self._s("POST", f"/element/{el}/value", {"text": text})

    def click(self, css):
        self._s("POST", f"/element/{self.find(css)}/click", {})

    def submit(self, css, expect=None, timeout=WAIT_TIMEOUT_S):
        """Clicks `css` and waits for the next page to load (and show `expect`): the old page may
        carry the same notice, so waiting for text alone could race the navigation."""
        self.script("window.__tollgateStale = true")
        self.click(css)
        deadline = time.monotonic() + timeout
        while True:
            try:
                fresh = self.script("return !window.__tollgateStale && document.readyState === 'complete'")
            except WebDriverError:
                fresh = False  # the document went away mid-call
            if fresh:
                break
            if time.monotonic() > deadline:
                raise WebDriverError(f"clicking {css!r} loaded no new page:\n{self.text()[:2000]}")
            time.sleep(0.05)
        if expect:
            self.wait_for_text(expect, timeout)

    def select(self, css, label):
        """Chooses the option of `<select>` `css` whose text contains `label`."""
        done = self.script(
            "var s=document.querySelector(arguments[0]);for(var o of s.options){if(o.text.indexOf(arguments[1])>=0)"
            "{s.value=o.value;return true}}return false", css, label)
        assert done, f"no option {label!r} in {css}"

    def wait_for_text(self, text, timeout=WAIT_TIMEOUT_S):
        deadline = time.monotonic() + timeout
        while text not in self.text():
            if time.monotonic() > deadline:
                raise WebDriverError(f"{text!r} never appeared on {self.url}:\n{self.text()[:2000]}")
            time.sleep(0.1)

    def element_text(self, css):
        return self._s("GET", f"/element/{self.find(css)}/text")
