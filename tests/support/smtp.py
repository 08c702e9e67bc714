"""A real SMTP sink: aiosmtpd in its own process, storing what it receives in a Maildir."""

import mailbox
import os
import socket
import subprocess
import sys
import tempfile
import time

from support.envoy import free_port, stop_process

READY_TIMEOUT_S = 15


class SmtpSink:
    def __init__(self, port=None):
        self.port = port or free_port()
        self.dir = tempfile.mkdtemp(prefix="tollgate-mail-")
        self.maildir = os.path.join(self.dir, "Maildir")
        self.proc = None

    @property
    def url(self):
        return f"smtp://127.0.0.1:{self.port}"

    def start(self):
        log = open(os.path.join(self.dir, "smtpd.log"), "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{self.port}",
             "-c", "aiosmtpd.handlers.Mailbox", self.maildir],
            stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("the SMTP sink did not start")

    def stop(self):
        stop_process(self.proc)

    def messages(self):
        if not os.path.isdir(self.maildir):
            return []
        return list(mailbox.Maildir(self.maildir, create=False))

    def wait_for(self, count, timeout=20):
        """The messages, once at least `count` arrived (and a moment later, to catch extras)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.messages()) >= count:
                time.sleep(0.5)
                return self.messages()
            time.sleep(0.1)
        raise AssertionError(f"{len(self.messages())} of {count} messages arrived in {timeout}s")
