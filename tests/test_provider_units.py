"""Amounts as each provider writes them (issue 15, item 8), through real `tollgate serve` and
localstripe on SQLite and PostgreSQL: an ISK invoice reaches Stripe in hundredths, JPY as is, KWD
with a last digit of 0; a billing currency the provider cannot charge is refused when saved."""

import pytest

from test_control_plane import assert_error
from test_billing import db  # noqa: F401
from test_stripe import GOOD, add_card, customer_of, developer, issue, stripe, world  # noqa: F401


@pytest.mark.parametrize("currency,price,amount", [
    ("ISK", "3000", 300000),   # ISO: 0 decimals; Stripe: two decimals, whole krónur
    ("JPY", "1500", 1500),     # zero-decimal at both
    ("KWD", "1.235", 1240),    # three decimals, Stripe wants a last digit of 0 (rounded half up)
])
def test_stripe_receives_its_own_minor_units(world, currency, price, amount):  # noqa: F811
    w, api = world, world["api"]
    st, body, _ = api.call("PUT", "/admin/api/v1/billing/settings", {"currency": currency})
    assert st == 200, body
    acct, _, dev = developer(w, "Ada")
    add_card(w, dev, GOOD)
    inv = issue(api, acct["id"], price)
    st, charged, _ = api.call("POST", f"/admin/api/v1/invoices/{inv['id']}/charge", {})
    assert st == 200 and charged["state"] == "paid", charged
    [pi] = w["stripe"].payment_intents(customer_of(w, acct["id"]))
    assert (pi["amount"], pi["currency"]) == (amount, currency.lower())


def test_a_currency_stripe_cannot_charge_is_refused_when_saved(world):  # noqa: F811
    api = world["api"]
    before = api.ok("GET", "/billing/settings")["currency"]
    assert_error(api.call("PUT", "/admin/api/v1/billing/settings", {"currency": "CLF"}), 422,
                 "currency_not_supported_by_provider")
    assert api.ok("GET", "/billing/settings")["currency"] == before
