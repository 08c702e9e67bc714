"""Issue 15 item 2 (control plane): an application never holds more live keys (active plus rotated
keys in their grace period) than MAX_LIVE_KEYS, well below the filter's per-application bound, and
its keys are rotated at most MAX_ROTATIONS_PER_APPLICATION_PER_HOUR times an hour, through the admin
API and the developer portal alike, sequentially and with 20 rotations at once, on SQLite and
PostgreSQL through a real `tollgate serve`."""

import re
import threading

from conftest import ADMIN_TOKEN
from support.control_plane import Api
from test_control_plane import assert_error
from test_portal import sign_up

MAX_LIVE_KEYS = 10  # control-plane/src/http/applications.rs
MAX_ROTATIONS_PER_HOUR = 10  # control-plane/src/rate_limit.rs
FILTER_MAX_KEYS_PER_APPLICATION = 16  # rules/src/names.rs


def portal_app(server, email):
    api = Api(server.base, ADMIN_TOKEN)
    svc = api.ok("POST", "/services", {"name": f"Keys {email}"})
    plan = api.ok("POST", "/plans", {"service_id": svc["id"], "name": "Open", "state": "published"})
    b = sign_up(server, email)
    _, _, html = b.request("GET", "/portal/applications")
    st, _, html = b.request("POST", "/portal/applications", {"name": "Bot", "plan_id": plan["id"], "csrf": b.csrf(html)})
    assert st == 201, html
    app_id = re.search(r'href="/portal/applications/(app_[A-Z0-9]+)"', html).group(1)
    return api, b, app_id


def live(api, app_id):
    return api.ok("GET", f"/applications/{app_id}/keys")["data"]


def active_ids(api, app_id):
    return [k["id"] for k in live(api, app_id) if k["expires_at"] is None]


def test_rotations_stop_at_the_live_key_cap_through_api_and_portal(server):
    api, b, app_id = portal_app(server, "rotor@example.com")
    outcomes = []
    for i in range(25):
        [key_id] = active_ids(api, app_id)
        before = sorted(k["id"] for k in live(api, app_id))
        if i % 2:
            st, body, _ = api.call("POST", f"/admin/api/v1/applications/{app_id}/keys/{key_id}/rotate", {"grace_seconds": 3600})
            outcomes.append(st)
            if st != 201:
                assert_error((st, body, None), 409, "live_key_limit_reached")
        else:
            _, _, html = b.request("GET", f"/portal/applications/{app_id}")
            st, _, html = b.request("POST", f"/portal/applications/{app_id}/keys/{key_id}/rotate", {"csrf": b.csrf(html)})
            outcomes.append(st)
            if st != 201:
                assert st == 409 and "at most 10 live keys" in html, (st, html)
        after = live(api, app_id)
        assert len(after) <= MAX_LIVE_KEYS < FILTER_MAX_KEYS_PER_APPLICATION
        if st != 201:
            assert sorted(k["id"] for k in after) == before, "a refused rotation writes nothing"
    assert outcomes[:MAX_LIVE_KEYS - 1] == [201] * (MAX_LIVE_KEYS - 1)
    assert set(outcomes[MAX_LIVE_KEYS - 1:]) == {409}
    assert len(live(api, app_id)) == MAX_LIVE_KEYS
    # A new key is refused too while the application is at the cap.
    assert_error(api.post(f"/applications/{app_id}/keys"), 409)


def test_rotation_rate_per_application(server):
    api, _, app_id = portal_app(server, "rate@example.com")
    for _ in range(MAX_ROTATIONS_PER_HOUR):
        [key_id] = active_ids(api, app_id)
        api.ok("POST", f"/applications/{app_id}/keys/{key_id}/rotate", {"grace_seconds": 0})
    [key_id] = active_ids(api, app_id)
    st, body, headers = api.call("POST", f"/admin/api/v1/applications/{app_id}/keys/{key_id}/rotate", {"grace_seconds": 0})
    assert_error((st, body, None), 429, "rotation_rate_limited")
    assert int(headers["retry-after"]) > 0
    assert active_ids(api, app_id) == [key_id], "the refused rotation wrote nothing"


def test_twenty_concurrent_rotations_never_exceed_the_cap(server):
    api, _, app_id = portal_app(server, "burst@example.com")
    for _ in range(4):
        api.ok("POST", f"/applications/{app_id}/keys")
    for _ in range(4):  # 5 active + 4 in grace = 9 live: room for one more
        api.ok("POST", f"/applications/{app_id}/keys/{active_ids(api, app_id)[0]}/rotate", {"grace_seconds": 3600})
    keys = active_ids(api, app_id)
    assert len(keys) == 5 and len(live(api, app_id)) == 9
    statuses, lock = [], threading.Lock()

    def rotate(i):
        st, body, _ = Api(server.base, ADMIN_TOKEN).call(
            "POST", f"/admin/api/v1/applications/{app_id}/keys/{keys[i % 5]}/rotate", {"grace_seconds": 3600})
        with lock:
            statuses.append((st, (body.get("error") or {}).get("code") if isinstance(body, dict) else None))

    threads = [threading.Thread(target=rotate, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(statuses) == 20
    made = sum(1 for st, _ in statuses if st == 201)
    assert made <= 1 and all(st in (201, 404, 409, 429, 503) for st, _ in statuses), statuses
    assert len(live(api, app_id)) == 9 + made <= MAX_LIVE_KEYS
