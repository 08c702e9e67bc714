"""Every answer the suite gets from the control plane's API, checked against the `/openapi.json` that
same server serves (openapi-core): the status is documented for the operation, the content type is
the documented one, the body matches the documented schema. `support.control_plane.Api.call` calls
`check` on every answer, so every end-to-end test is also a contract test.

TOLLGATE_CONTRACT chooses what a mismatch does:
  enforce  (default) the test fails with the operation, the status and the validation error;
  log      nothing fails: each mismatch is appended to TOLLGATE_CONTRACT_LOG (default
           `tests/.contract-mismatches.jsonl`) and the run ends with a summary of all of them,
           grouped by operation and status (to fix them in bulk);
  off      no checking.
A document that marks itself `x-tollgate-hand-written` (the old hand-written one, served until the
generated document is switched on in `http/openapi.rs`) is checked in `log` mode whatever the
variable says: it was never meant to match the real answers.

Out of scope: the portals' HTML pages (`/portal`, `/admin` outside `/admin/api/`) and traffic through
the gateways (Envoy, Kong), which do not go through `Api`.
"""

import hashlib
import json
import os
import re
import threading
import urllib.parse
import urllib.request
from collections import Counter
from pathlib import Path

#: Paths the document describes (the rest are portal pages).
API_PREFIXES = ("/admin/api/", "/api/", "/gateway/", "/webhooks/", "/healthz", "/openapi.json")
#: The router's own "no such route" answers: an undocumented path answered so agrees with the
#: document (tests send them on purpose).
NO_ROUTE_CODES = ("route_not_found", "method_not_allowed")

DEFAULT_LOG = Path(__file__).resolve().parents[1] / ".contract-mismatches.jsonl"

_lock = threading.Lock()
_by_hash = {}   # sha256 of the document -> (OpenAPI, hand_written)
_by_base = {}   # base URL -> sha256 of its document


class ContractMismatch(AssertionError):
    pass


def mode():
    return os.environ.get("TOLLGATE_CONTRACT", "enforce")


def log_path():
    return Path(os.environ.get("TOLLGATE_CONTRACT_LOG") or DEFAULT_LOG)


def _load(base):
    """The openapi-core view of `base`'s /openapi.json, fetched once per server and parsed (and
    checked as OpenAPI) once per distinct document."""
    from openapi_core import Config, OpenAPI

    with _lock:
        digest = _by_base.get(base)
        if digest is None:
            with urllib.request.urlopen(base + "/openapi.json", timeout=30) as r:
                raw = r.read()
            digest = hashlib.sha256(raw).hexdigest()
            if digest not in _by_hash:
                doc = json.loads(raw)
                hand_written = bool(doc.get("x-tollgate-hand-written"))
                # The generated document must be valid OpenAPI 3.1 (from_dict refuses it
                # otherwise); the hand-written one is not (`{id}.pdf` paths), and is only logged.
                config = Config(spec_validator_cls=None) if hand_written else None
                _by_hash[digest] = (OpenAPI.from_dict(doc, config=config), hand_written)
            _by_base[base] = digest
        return _by_hash[digest]


def forget(base):
    """A server restarted on the same port may serve another binary's document."""
    with _lock:
        _by_base.pop(base, None)


def describe(exc):
    """The validation error, with the schema errors openapi-core keeps in its causes."""
    parts = [f"{type(exc).__name__}: {exc}"]
    seen = exc.__cause__
    while seen is not None:
        for err in getattr(seen, "schema_errors", None) or []:
            where = getattr(err, "json_path", None) or "$"
            parts.append(f"  at {where}: {getattr(err, 'message', err)}")
        if not getattr(seen, "schema_errors", None):
            parts.append(f"  caused by {type(seen).__name__}: {seen}")
        seen = seen.__cause__
    return "\n".join(parts)


def check(base, method, path, req_headers, status, resp_headers, raw):
    """Validates one answer; `path` may carry a query string. Raises ContractMismatch (enforce)."""
    if mode() == "off":
        return
    url = urllib.parse.urlsplit(path)
    if not url.path.startswith(API_PREFIXES):
        return
    from openapi_core.templating.paths.exceptions import PathError
    from openapi_core.testing import MockRequest, MockResponse

    api, hand_written = _load(base)
    content_type = resp_headers.get("content-type", "")
    request = MockRequest(base, method, url.path, args=dict(urllib.parse.parse_qsl(url.query)),
                          headers=req_headers)
    # A text answer (CSV exports) is a string to the validator, as its schema says; bytes stay
    # bytes for the binary ones (the compact snapshot, PDFs).
    data = raw
    if content_type.startswith("text/") and isinstance(raw, bytes):
        try:
            data = raw.decode("utf-8")
        except UnicodeDecodeError:
            pass
    response = MockResponse(data, status_code=status, headers=resp_headers,
                            content_type=content_type.split(";")[0].strip())
    try:
        api.validate_response(request, response)
        return
    except PathError as e:
        code = None
        try:
            code = (json.loads(raw).get("error") or {}).get("code")
        except (ValueError, AttributeError):
            pass
        if code in NO_ROUTE_CODES:
            return
        error = describe(e)
    except Exception as e:  # noqa: BLE001 - every openapi-core validation error is a mismatch
        error = describe(e)
    record = {"operation": f"{method.upper()} {url.path}", "status": status, "content_type": content_type,
              "error": error, "body": raw[:500].decode("utf-8", "replace"),
              "test": os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" ", 1)[0]}
    if mode() == "log" or hand_written:
        with _lock, open(log_path(), "a") as f:
            f.write(json.dumps(record) + "\n")
        return
    raise ContractMismatch(
        f"the answer does not match /openapi.json: {record['operation']} -> {status} {content_type}\n"
        f"{error}\nbody: {record['body']}\n(TOLLGATE_CONTRACT=log collects every mismatch of a run)")


def summary():
    """Lines summing up the logged mismatches of this run (for pytest's terminal summary)."""
    path = log_path()
    if not path.exists():
        return []
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if not records:
        return []

    def template(text):
        # Ids (`svc_01J...`, `in_...`) and the servers' ports vary per run: group by shape.
        text = re.sub(r"https?://127\.0\.0\.1:\d+", "", text)
        return re.sub(r"(?<=/)[a-z]+_[0-9A-Za-z]{8,}", "{id}", text)

    def first_line(r):
        return template(r["error"].splitlines()[0])[:160]

    groups = Counter((template(r["operation"]), r["status"], first_line(r)) for r in records)
    lines = [f"{len(records)} answers did not match /openapi.json ({len(groups)} distinct; "
             f"details in {path}):"]
    for (op, status, err), n in sorted(groups.items()):
        lines.append(f"  {n:4d}x {op} -> {status}: {err}")
    return lines
