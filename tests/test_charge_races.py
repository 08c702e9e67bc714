"""Two charges of one invoice at once (issue 15, item 5): 20 pays of one invoice released together,
half through the developer API and half through the admin API, while the first charge is still at
the provider (the Braintree contract server answers it a second late; Braintree has no idempotency
key, so a second call would be a second transaction). Real `tollgate serve` on SQLite and
PostgreSQL."""

import threading
import urllib.request

from test_braintree import contract, transactions, vault, world  # noqa: F401 (fixtures)
from test_billing import db  # noqa: F401
from test_stripe import developer, issue

PAYS = 20
#: How late the contract server answers the first charge: long enough that every other pay
#: arrives while it is in flight, shorter than the fixture's payment timeout (1.5 s).
CHARGE_DELAY_S = 0.8


def test_twenty_pays_at_once_charge_the_card_once(world):  # noqa: F811
    w, api = world, world["api"]
    acct, _, dev = developer(w, "Race")
    st, card, _ = vault(dev, "fake-valid-nonce")
    assert st == 201, card
    inv = issue(api, acct["id"], "25.00")
    urllib.request.urlopen(urllib.request.Request(
        w["contract"] + f"/_contract/delay_next_charge?seconds={CHARGE_DELAY_S}", data=b"", method="POST"),
        timeout=10).read()
    barrier = threading.Barrier(PAYS)
    results = [None] * PAYS

    def pay(i):
        barrier.wait(timeout=30)
        if i % 2:
            results[i] = dev.call("POST", f"/api/v1/invoices/{inv['id']}/pay", {})
        else:
            results[i] = api.call("POST", f"/admin/api/v1/invoices/{inv['id']}/charge", {})

    threads = [threading.Thread(target=pay, args=(i,)) for i in range(PAYS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    statuses = [r[0] for r in results]
    # One charge at the provider, whatever the interleaving.
    assert [t["orderId"] for t in transactions(w["contract"])] == [f"{inv['id']}-1"], statuses
    assert api.ok("GET", f"/invoices/{inv['id']}")["state"] == "paid"
    # The others were told a charge is in progress (or, once it finished, that there is nothing to
    # pay): never a decline, never a 5xx.
    for st, body, _ in results:
        if st != 200:
            assert st == 409 and body["error"]["code"] in ("charge_in_progress", "invalid_state"), (st, body)
    assert statuses.count(200) >= 1, statuses
    states = w["db"].query(f"SELECT state FROM charge_attempts WHERE invoice_id = '{inv['id']}'")
    assert states == ["succeeded"], states
    kinds = w["db"].query("SELECT kind FROM email_outbox")
    assert "charge_failed" not in kinds, kinds
