"""localstripe (through support/localstripe_compat.py) as the Stripe API and webhook sender."""

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

from support.envoy import free_port, stop_process

SECRET_KEY = "sk_test_tollgate_0123456789"
PUBLISHABLE_KEY = "pk_test_tollgate_0123456789"
WEBHOOK_SECRET = "whsec_tollgate_test_0123456789"
READY_TIMEOUT_S = 20


class LocalStripe:
    def __init__(self):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = os.path.join(tempfile.mkdtemp(prefix="tollgate-stripe-"), "localstripe.log")
        self.proc = None

    def start(self):
        script = os.path.join(os.path.dirname(__file__), "localstripe_compat.py")
        self.proc = subprocess.Popen([sys.executable, script, "--port", str(self.port)],
                                     stdout=open(self.log_path, "w"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("localstripe did not start:\n" + open(self.log_path).read())

    def stop(self):
        stop_process(self.proc)

    def call(self, method, path, form=None):
        data = urllib.parse.urlencode(form or {}, doseq=True).encode() if form is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Authorization": f"Bearer {SECRET_KEY}"})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def card(self, number):
        """A PaymentMethod as Stripe.js would create it in the browser."""
        st, pm = self.call("POST", "/v1/payment_methods", {
            "type": "card", "card[number]": number, "card[exp_month]": "12", "card[exp_year]": "2034",
            "card[cvc]": "123"})
        assert st == 200, pm
        return pm["id"]

    def register_webhook(self, url):
        st, body = self.call("POST", "/_config/webhooks/tollgate", {"url": url, "secret": WEBHOOK_SECRET})
        assert st == 200, body

    def payment_intents(self, customer):
        st, body = self.call("GET", f"/v1/payment_intents?customer={customer}&limit=100")
        assert st == 200, body
        return body["data"]

    def delay_next_payment_intent(self, seconds):
        st, _ = self.call("POST", f"/_compat/delay_next_payment_intent?seconds={seconds}", {})
        assert st == 200
