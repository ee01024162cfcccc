"""Every legal sequence of API calls leaves a database the next start accepts: meter replacements
(on the old unit id, onto a new one, onto one another meter's history left free), closings and
reopenings, then the server is started again on the same database (the site file, written before
any replacement, is imported again at each start). On SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from scada.prepaid.engine import PREPAID
from scada.site.component import ASSETS

from ..harness import running_server, server_config
from .prepaid_api import FLAT, WATER, Api, approved, prepaid_api
from .prepaid_site import prepaid_extra, with_site


async def call_ok(api: Api, method: str, path: str, user: str, body: object = None, status: int = 200) -> dict[str, object]:
    got, answer = await api.call(method, path, user, body)
    assert got == status, (method, path, got, answer)
    return answer  # type: ignore[no-any-return]


async def test_a_start_after_replacements_closings_and_reopenings_succeeds(tmp_path: Path, migrated_db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCADA_TEST_ADMIN_PASSWORD", "admin-password-1")
    async with prepaid_api(tmp_path, migrated_db_url) as api:
        await call_ok(api, "POST", "/tariffs", "engineer", FLAT, 201)
        await call_ok(api, "POST", "/tariffs", "engineer", WATER, 201)
        await call_ok(api, "POST", "/rooms/R1/account/open", "cashier", {"tariffs": {"electricity": "FLAT"}}, 201)
        await call_ok(api, "POST", "/rooms/R2/account/open", "cashier", {"tariffs": {"electricity": "FLAT", "water": "WATER"}}, 201)

        def replace(new: str, final: str, **kw: object) -> dict[str, object]:
            return {"new_meter": new, "final_reading": final, "reason": "meter swapped", **kw}

        await call_ok(api, "POST", "/meters/E1/replace", "engineer", replace("E1b", "10"))  # keeps unit 1
        await call_ok(api, "POST", "/meters/E1b/replace", "engineer", replace("E1c", "3", unit_id=9))  # to unit 9
        await call_ok(api, "POST", "/meters/W2/replace", "engineer", replace("W2b", "1.5"))  # keeps unit 3
        await call_ok(api, "POST", "/meters/E2/replace", "engineer", replace("E2b", "20", unit_id=1))  # unit 1, free again
        # onto a unit an active meter holds: refused, and nothing billed or changed
        err = await call_ok(api, "POST", "/meters/E2b/replace", "engineer", replace("E2c", "21", unit_id=9), 409)
        assert "unit 9 is already used by meter E1c" in str(err["error"])
        # closings (after settling what the final readings billed) and reopenings, with an
        # opening balance a supervisor approves
        for room in ("R1", "R2"):
            await call_ok(api, "POST", f"/rooms/{room}/account/recharge", "cashier", {"amount": "10", "reference": f"settle-{room}"})
        await call_ok(api, "POST", "/rooms/R1/account/close", "cashier", {"reason": "moved out"})
        status, body = await api.call("POST", "/rooms/R1/account/open", "cashier", {"tariffs": {"electricity": "FLAT"}, "opening_balance": "50"})
        await approved(api, status, body)
        await call_ok(api, "POST", "/rooms/R2/account/close", "cashier", {"reason": "moved out"})
        await call_ok(api, "POST", "/rooms/R2/account/open", "cashier", {"tariffs": {"electricity": "FLAT", "water": "WATER"}}, 201)
        await call_ok(api, "POST", "/meters/E1c/replace", "engineer", replace("E1d", "4"))  # after the reopening
        active_before = sorted(m.id for m in api.rt.ctx[ASSETS].snapshot.active_meters)
    assert active_before == ["E1d", "E2b", "W2b"]

    # the next starts, on the same database, importing the same site file (written before any replacement)
    for _ in range(2):
        async with running_server(with_site(server_config(tmp_path, migrated_db_url, prepaid_extra(tmp_path)))) as rt:
            snap = rt.ctx[ASSETS].snapshot
            assert sorted(m.id for m in snap.active_meters) == active_before
            assert snap.meters["E1"].replaced_by == "E1b" and not snap.meters["E1"].active and snap.meters["E1d"].unit_id == 9
            r1 = await rt.ctx[PREPAID].account("R1")
            assert r1 is not None and r1.open and r1.balance_minor == 5_000
