"""A contract server for Braintree's GraphQL API, for tests only.

Braintree has no emulator. This server answers the operations Tollgate sends with responses shaped
as Braintree documents them (braintree/graphql-api schema, SDK sources; see ../shared/notes), with
the sandbox's test values: nonces `fake-valid-nonce` (Visa 1111), `fake-valid-mastercard-nonce`
(Mastercard 4444), `fake-processor-declined-visa-nonce` (verification PROCESSOR_DECLINED, nothing
vaulted), `fake-consumed-nonce` (VALIDATION error); amounts 2000.00-2999.99 are PROCESSOR_DECLINED
with that legacy code, 3000.00-3000.99 FAILED (3000), 5001.00 GATEWAY_REJECTED. It checks what a
real server checks here: Basic credentials (401), the Braintree-Version header, the amount format.
State: customers, vaulted cards, transactions (searchable by orderId).

Merchant accounts (`--merchant-accounts USD=acct_usd,EUR=acct_eur,JPY=acct_jpy`; the first is the
default): a transaction is in the currency of the merchant account it names (`merchantAccountId`),
or of the default account when it names none, as at Braintree; each transaction records both. An
unknown id is a VALIDATION error 91513 "Merchant account ID is invalid." and charges nothing; an
amount with more decimals than the account's currency allows is 81503 (amount format).

`POST /_contract/delay_next_charge?seconds=S` makes the next charge happen but answer S seconds late
(and, as at Braintree, a search by its order id finds nothing until it has answered).
`GET /_contract/transactions`: every transaction; `GET /_contract/charge_calls`: how many
`chargePaymentMethod` calls arrived (refused ones included).
Run: python braintree_contract.py --port PORT --public-key K --private-key P
"""

import argparse
import base64
import itertools
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

STATE = {"customers": {}, "methods": {}, "transactions": [], "delay": 0.0,
         "merchant_accounts": {"tollgate_usd": "USD"}, "default_account": "tollgate_usd", "charge_calls": 0,
         "in_flight": set()}
#: Decimal places of the currencies the tests use (Braintree: "must match the currency format of the
#: merchant account"); others are taken as two.
DECIMALS = {"JPY": 0, "ISK": 0, "KRW": 0, "KWD": 3, "BHD": 3}
LOCK = threading.Lock()
IDS = itertools.count(1)
NONCES = {
    "fake-valid-nonce": ("VISA", "1111"),
    "fake-valid-visa-nonce": ("VISA", "1111"),
    "fake-valid-mastercard-nonce": ("MASTERCARD", "4444"),
}
AMOUNT = re.compile(r"^\d+(\.\d{1,3})?$")


def gid(kind):
    return base64.b64encode(f"{kind}_{next(IDS):06d}".encode()).decode().rstrip("=")


def error(message, error_class, legacy_code=None, path=None):
    ext = {"errorClass": error_class}
    if legacy_code:
        ext["legacyCode"] = legacy_code
    return {"data": None, "errors": [{"message": message, "locations": [{"line": 1, "column": 1}],
                                      "path": path or [], "extensions": ext}],
            "extensions": {"requestId": gid("req")}}


def ok(data):
    return {"data": data, "extensions": {"requestId": gid("req")}}


def card_node(m):
    return {"id": m["id"], "details": {"__typename": "CreditCardDetails", "brandCode": m["brand"],
                                       "last4": m["last4"], "expirationMonth": "12", "expirationYear": "2034"}}


def transaction(amount, order_id, method_id, account_id, currency):
    value = float(amount)
    status, history = "SUBMITTED_FOR_SETTLEMENT", [{"status": "SUBMITTED_FOR_SETTLEMENT", "timestamp": "2026-01-01T00:00:00Z"}]
    if 2000 <= value < 3000:
        code = str(int(value))
        status = "PROCESSOR_DECLINED"
        history = [{"status": status, "timestamp": "2026-01-01T00:00:00Z", "declineType": "SOFT",
                    "processorResponse": {"legacyCode": code, "message": "Do Not Honor" if code == "2000" else "Insufficient Funds" if code == "2001" else "Declined"}}]
    elif 3000 <= value < 3001:
        status = "FAILED"
        history = [{"status": status, "timestamp": "2026-01-01T00:00:00Z",
                    "processorResponse": {"legacyCode": "3000", "message": "Processor Network Unavailable - Try Again"}}]
    elif value == 5001:
        status = "GATEWAY_REJECTED"
        history = [{"status": status, "timestamp": "2026-01-01T00:00:00Z", "gatewayRejectionReason": "APPLICATION_INCOMPLETE"}]
    tx = {"id": gid("transaction"), "legacyId": f"{next(IDS):08x}", "status": status, "orderId": order_id,
          "amount": {"value": amount, "currencyCode": currency}, "merchantAccountId": account_id,
          "paymentMethod": {"id": method_id},
          "statusHistory": history}
    return tx


def handle(query, variables):
    v = variables.get("input", {}) if isinstance(variables, dict) else {}
    if "createCustomer" in query:
        c = {"id": gid("customer"), "email": v.get("customer", {}).get("email")}
        STATE["customers"][c["id"]] = c
        return ok({"createCustomer": {"customer": {"id": c["id"], "legacyId": c["id"][-6:], "email": c["email"]}}})
    if "createClientToken" in query:
        customer = v.get("clientToken", {}).get("customerId")
        if customer and customer not in STATE["customers"]:
            return error("Customer specified by customer_id does not exist", "VALIDATION", "92804", ["createClientToken"])
        token = base64.b64encode(json.dumps({"version": 2, "authorizationFingerprint": gid("fp")}).encode()).decode()
        return ok({"createClientToken": {"clientToken": token}})
    if "vaultPaymentMethod" in query:
        nonce, customer = v.get("paymentMethodId"), v.get("customerId")
        if customer not in STATE["customers"]:
            return error("Customer not found", "NOT_FOUND", None, ["vaultPaymentMethod"])
        if nonce == "fake-processor-declined-visa-nonce":
            return ok({"vaultPaymentMethod": {"paymentMethod": None, "verification": {
                "id": gid("verification"), "status": "PROCESSOR_DECLINED",
                "processorResponse": {"legacyCode": "2000", "message": "Do Not Honor"}, "gatewayRejectionReason": None}}})
        if nonce not in NONCES:
            return error("Unknown or expired payment method ID.", "VALIDATION", "91565", ["vaultPaymentMethod"])
        brand, last4 = NONCES[nonce]
        m = {"id": gid("paymentmethod"), "customer": customer, "brand": brand, "last4": last4}
        STATE["methods"][m["id"]] = m
        return ok({"vaultPaymentMethod": {"paymentMethod": card_node(m), "verification": {
            "id": gid("verification"), "status": "VERIFIED",
            "processorResponse": {"legacyCode": "1000", "message": "Approved"}, "gatewayRejectionReason": None}}})
    if "deletePaymentMethodFromVault" in query:
        if STATE["methods"].pop(v.get("paymentMethodId"), None) is None:
            return error("An object with this ID was not found.", "NOT_FOUND", None, ["deletePaymentMethodFromVault"])
        return ok({"deletePaymentMethodFromVault": {"clientMutationId": None}})
    if "chargePaymentMethod" in query:
        method = v.get("paymentMethodId")
        t = v.get("transaction", {})
        amount = str(t.get("amount", ""))
        STATE["charge_calls"] += 1
        account = t.get("merchantAccountId") or STATE["default_account"]
        if account not in STATE["merchant_accounts"]:
            return error("Merchant account ID is invalid.", "VALIDATION", "91513", ["chargePaymentMethod"])
        currency = STATE["merchant_accounts"][account]
        decimals = len(amount.split(".")[1]) if "." in amount else 0
        if not AMOUNT.match(amount) or float(amount) <= 0 or decimals > DECIMALS.get(currency, 2):
            return error("Amount is an invalid format.", "VALIDATION", "81503", ["chargePaymentMethod"])
        if method not in STATE["methods"]:
            return error("Unknown or expired payment method ID.", "VALIDATION", "91565", ["chargePaymentMethod"])
        tx = transaction(amount, t.get("orderId"), method, account, currency)
        STATE["transactions"].append(tx)
        return ok({"chargePaymentMethod": {"transaction": tx}})
    if "search" in query and "transactions" in query:
        order = v.get("orderId", {}).get("is")
        # As at Braintree, a transaction is not found while its charge call is still in flight.
        edges = [{"node": tx} for tx in STATE["transactions"]
                 if tx["orderId"] == order and tx["id"] not in STATE["in_flight"]]
        return ok({"search": {"transactions": {"edges": edges, "pageInfo": {"hasNextPage": False}}}})
    if "node(" in query:
        customer = variables.get("id")
        if customer not in STATE["customers"]:
            return ok({"node": None})
        methods = [m for m in STATE["methods"].values() if m["customer"] == customer]
        return ok({"node": {"__typename": "Customer", "paymentMethods": {"edges": [{"node": card_node(m)} for m in methods]}}})
    return error("Unsupported operation in the contract server", "UNSUPPORTED_CLIENT")


def make_handler(public_key, private_key):
    expected = "Basic " + base64.b64encode(f"{public_key}:{private_key}".encode()).decode()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def send(self, status, body):
            raw = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def do_GET(self):
            if self.path == "/_contract/transactions":
                with LOCK:
                    return self.send(200, STATE["transactions"])
            if self.path == "/_contract/charge_calls":
                with LOCK:
                    return self.send(200, {"charge_calls": STATE["charge_calls"]})
            self.send(404, {})

        def do_POST(self):
            length = int(self.headers.get("Content-Length", "0"))
            raw = self.rfile.read(length)
            if self.path.startswith("/_contract/delay_next_charge"):
                STATE["delay"] = float(self.path.split("seconds=")[-1])
                return self.send(200, {"ok": True})
            if self.path != "/graphql":
                return self.send(404, {})
            if self.headers.get("Authorization") != expected:
                return self.send(401, {"error": {"message": "Authentication credentials are invalid"}})
            if not self.headers.get("Braintree-Version"):
                return self.send(200, error("Braintree-Version header required", "UNSUPPORTED_CLIENT"))
            body = json.loads(raw or b"{}")
            query = body.get("query", "")
            with LOCK:
                answer = handle(query, body.get("variables") or {})
                delay = STATE["delay"] if "chargePaymentMethod" in query else 0
                tx = ((answer.get("data") or {}).get("chargePaymentMethod") or {}).get("transaction")
                if delay:
                    STATE["delay"] = 0.0
                    if tx:
                        STATE["in_flight"].add(tx["id"])
            if delay:
                time.sleep(delay)
                with LOCK:
                    STATE["in_flight"].discard(tx["id"] if tx else None)
            self.send(200, answer)

    return Handler


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--public-key", required=True)
    parser.add_argument("--private-key", required=True)
    parser.add_argument("--merchant-accounts", default="USD=tollgate_usd",
                        help="CUR=id,...: the merchant accounts and their currencies; the first is the default")
    args = parser.parse_args()
    pairs = [p.split("=", 1) for p in args.merchant_accounts.split(",") if p]
    STATE["merchant_accounts"] = {account: currency for currency, account in pairs}
    STATE["default_account"] = pairs[0][1]
    ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(args.public_key, args.private_key)).serve_forever()


if __name__ == "__main__":
    main()
