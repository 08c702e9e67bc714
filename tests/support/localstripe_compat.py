"""localstripe (a Stripe emulator from PyPI) behind a small compatibility layer, for tests only.

localstripe is incomplete where async-stripe is strict (see ../shared/notes and the README), so this
layer, and never the production client, bridges the gap:
- it listens on loopback only;
- it fills the fields Stripe documents and localstripe leaves out (PaymentIntent, Charge, errors);
- it replays a POST with an `Idempotency-Key` it has seen (Stripe does; localstripe does not);
- it filters PaymentIntent lists by `customer` (localstripe refuses the parameter);
- `POST /_compat/delay_next_payment_intent?seconds=S` makes the next PaymentIntent creation succeed
  at localstripe but answer only after S seconds (a timeout after Stripe accepted the charge);
- nothing is written to /tmp/localstripe.pickle (every run starts empty).

Run: python localstripe_compat.py --port PORT
"""

import argparse
import asyncio
import json

from aiohttp import web
from localstripe import resources
from localstripe import server as ls

resources.store.dump_to_disk = lambda: None

IDEMPOTENT = {}
FAULTS = {"delay_next_payment_intent": 0.0}

PAYMENT_INTENT = {"amount_capturable": 0, "amount_details": None, "application": None,
                  "application_fee_amount": None, "automatic_payment_methods": None,
                  "canceled_at": None, "cancellation_reason": None, "confirmation_method": "automatic",
                  "description": None, "last_payment_error": None, "livemode": False, "on_behalf_of": None,
                  "payment_method_configuration_details": None, "payment_method_options": None,
                  "payment_method_types": ["card"], "processing": None, "receipt_email": None,
                  "review": None, "setup_future_usage": None, "shipping": None, "source": None,
                  "statement_descriptor": None, "statement_descriptor_suffix": None,
                  "transfer_data": None, "transfer_group": None}
CHARGE = {"amount_captured": 0, "billing_details": {"address": None, "email": None, "name": None, "phone": None},
          "disputed": False}
ERROR = {"type": "card_error"}


def fill(value):
    if isinstance(value, list):
        return [fill(v) for v in value]
    if not isinstance(value, dict):
        return value
    out = {k: fill(v) for k, v in value.items()}
    kind = out.get("object")
    if kind == "payment_intent":
        for k, v in PAYMENT_INTENT.items():
            out.setdefault(k, v)
        out.setdefault("amount_received", out.get("amount", 0) if out.get("status") == "succeeded" else 0)
        if isinstance(out.get("last_payment_error"), dict):
            out["last_payment_error"].setdefault("type", "card_error")
    elif kind == "charge":
        for k, v in CHARGE.items():
            out.setdefault(k, v)
        if out.get("captured"):
            out["amount_captured"] = out.get("amount", 0)
    if "error" in out and isinstance(out["error"], dict):
        for k, v in ERROR.items():
            out["error"].setdefault(k, v)
    return out


@web.middleware
async def compat(request, handler):
    if request.path == "/_compat/delay_next_payment_intent":
        FAULTS["delay_next_payment_intent"] = float(request.query.get("seconds", "0"))
        return web.json_response({"ok": True})
    key = request.headers.get("Idempotency-Key")
    cache_key = (request.method, request.path, key)
    if request.method == "POST" and key and cache_key in IDEMPOTENT:
        status, body = IDEMPOTENT[cache_key]
        return web.Response(status=status, body=body, content_type="application/json",
                            headers={"Idempotent-Replayed": "true"})
    # Stripe filters lists by customer; localstripe refuses the parameter: filter here instead.
    only_customer = None
    if request.method == "GET" and request.path == "/v1/payment_intents" and "customer" in request.query:
        only_customer = request.query["customer"]
        only_limit = int(request.query.get("limit", "10"))
        # Filter the whole list, then page: localstripe would page before the filter.
        query = {k: v for k, v in request.query.items() if k not in ("customer", "limit")}
        query["limit"] = "1000000"
        request = request.clone(rel_url=request.rel_url.with_query(query))
    try:
        response = await handler(request)
    except web.HTTPException as e:
        response = e
    body = getattr(response, "body", None) or getattr(response, "text", None)
    if response.content_type == "application/json" and body is not None:
        raw = body if isinstance(body, (bytes, str)) else body._value
        data = fill(json.loads(raw))
        if only_customer is not None and isinstance(data.get("data"), list):
            mine = [o for o in data["data"] if o.get("customer") == only_customer]
            data["data"] = mine[:only_limit]
            data["has_more"] = len(mine) > only_limit
        body = json.dumps(data).encode()
        response = web.Response(status=response.status, body=body, content_type="application/json")
        if request.method == "POST" and key and response.status < 500:
            IDEMPOTENT[cache_key] = (response.status, body)
    if request.method == "POST" and request.path == "/v1/payment_intents":
        delay = FAULTS["delay_next_payment_intent"]
        if delay:
            FAULTS["delay_next_payment_intent"] = 0.0
            await asyncio.sleep(delay)
    return response


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    ls.app.middlewares.insert(0, compat)
    web.run_app(ls.app, host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
