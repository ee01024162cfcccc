"""Fuzzing the JSON API: schemathesis generates requests for every operation of the served
``/api/v1/openapi.json`` (as an administrator: valid requests per the schema, and requests that
break it), against ``scada demo`` running as a real process. No answer may be a 5xx; afterwards
the server stops cleanly and starts again on the same database.

Bounded for CI: a few examples per operation (``POSITIVE``/``NEGATIVE`` below), derandomized
(the same cases every run). Half of the positive cases use ids that exist in the demo (a room, a
meter, a ledger entry, an alarm, a tariff, a user, a link), so that requests reach the handlers'
logic rather than their 404s.
"""

from __future__ import annotations

import re
import signal
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from ..procs import ScadaProcess, demo_port_args

pytestmark = pytest.mark.slow

PASSWORD = "fuzz-admin-password"
POSITIVE = 6  # examples per operation
NEGATIVE = 3
# operations the fuzzer never aims at ids that exist (none: a replaced meter survives restarts)
NO_KNOWN_IDS: frozenset[tuple[str, str]] = frozenset()


def _token(base: str, user: str = "admin", password: str = PASSWORD) -> dict[str, str]:
    r = requests.post(base + "/api/v1/auth/token", json={"user": user, "password": password}, timeout=30)
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


def _known_ids(base: str, headers: dict[str, str]) -> dict[str, str]:
    get = lambda path: requests.get(base + "/api/v1" + path, headers=headers, timeout=30)  # noqa: E731
    r = requests.post(base + "/api/v1/users", headers=headers, timeout=30,
                      json={"name": "fuzz-viewer", "role": "viewer", "password": "fuzz-viewer-password", "reason": "fuzz"})
    assert r.status_code == 201, r.text
    known = {"room": "B1-R101", "meter": "E-B1-101", "id": "DEMO-TOU", "name": "fuzz-viewer", "link": "gw-1", "alarm_id": "1", "entry": "1"}
    ledger = get("/rooms/B1-R101/account/ledger").json()
    if ledger.get("entries"):
        known["entry"] = str(ledger["entries"][-1]["id"])
    alarms = get("/alarms?state=open").json()
    if alarms.get("alarms"):
        known["alarm_id"] = str(alarms["alarms"][0]["id"])
    return known


def _fuzz(operation: Any, mode: Any, examples: int, known: dict[str, str], base: str, headers: dict[str, str],
          statuses: Counter[int], failures: list[str]) -> None:
    """``examples`` generated requests of ``operation``; half of them with the ``known`` ids."""

    @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
    @given(case=operation.as_strategy(generation_mode=mode), use_known=st.booleans())
    def run(case: Any, use_known: bool) -> None:
        if use_known and known and case.path_parameters:
            case.path_parameters = {k: known.get(k, v) for k, v in case.path_parameters.items()}
        response = case.call(base_url=base, headers=headers, timeout=60)
        statuses[response.status_code] += 1
        if response.status_code >= 500:
            failures.append(f"{case.method} {case.formatted_path} query={case.query} body={str(case.body)[:300]} -> "
                            f"{response.status_code} {response.text[:200]}")

    run()


def test_no_request_gets_a_5xx_and_the_server_restarts(tmp_path: Path) -> None:
    env = {"SCADA_ADMIN_PASSWORD": PASSWORD}
    args = [*demo_port_args(), "demo"]
    with ScadaProcess(args, cwd=tmp_path, env=env) as server:
        base = re.search(r"http://127\.0\.0\.1:[0-9]+", server.wait_for(r"HMI listening", timeout=90)).group(0)  # type: ignore[union-attr]
        server.wait_for(r"\bready\b", timeout=90)
        admin = _token(base)
        known = _known_ids(base, admin)
        schema = schemathesis.openapi.from_url(base + "/api/v1/openapi.json")
        failures: list[str] = []
        statuses: Counter[int] = Counter()
        operations = 0
        for result in schema.get_all_operations():
            operation = result.ok()
            operations += 1
            for mode, examples in ((schemathesis.GenerationMode.POSITIVE, POSITIVE), (schemathesis.GenerationMode.NEGATIVE, NEGATIVE)):
                aim = mode is schemathesis.GenerationMode.POSITIVE and (operation.method.upper(), operation.path) not in NO_KNOWN_IDS
                _fuzz(operation, mode, examples, known if aim else {}, base, admin, statuses, failures)
        assert operations >= 45, operations  # every operation of the document was fuzzed
        assert not failures, "\n".join(failures)
        assert statuses[200] + statuses[201] > 0 and sum(statuses.values()) >= operations * (POSITIVE + NEGATIVE) // 2, statuses
        assert server.stop(signal.SIGTERM) == 0, "\n".join(server.stderr[-40:])
    assert not any("API handler failed" in line for line in server.stderr), "\n".join(server.stderr[-40:])

    # the same database again: whatever the fuzzer did through the API, the server comes up
    with ScadaProcess(args, cwd=tmp_path, env=env) as again:
        base = re.search(r"http://127\.0\.0\.1:[0-9]+", again.wait_for(r"HMI listening", timeout=90)).group(0)  # type: ignore[union-attr]
        again.wait_for(r"\bready\b", timeout=90)
        r = requests.get(base + "/api/v1/rooms", headers=_token(base), timeout=30)
        assert r.status_code == 200 and r.json()["rooms"], r.text
        assert again.stop(signal.SIGTERM) == 0, "\n".join(again.stderr[-40:])
