"""The cashier, receipt, accounts and tariffs pages over HTTP: roles, unknown rooms and entries,
and what each shows."""

from __future__ import annotations

import re

from .conftest import Hmi, browser_like, login, open_accounts


async def test_cashier_pages(hmi: Hmi) -> None:
    await open_accounts(hmi, {"B1-R101": "20.00", "B1-R102": "5.00"})
    async with browser_like() as op:
        await login(op, hmi.url, "operator1")
        for path in ("/cashier", "/cashier?room=B1-R101", "/accounts", "/cashier/receipt/B1-R101/1"):
            async with op.get(hmi.url + path) as r:
                assert r.status == 403, path  # operators do not take money
        async with op.get(hmi.url + "/") as r:
            assert 'href="/cashier"' not in await r.text()
    async with browser_like() as http:
        await login(http, hmi.url, "cashier1")
        async with http.get(hmi.url + "/cashier?q=r10") as r:
            html = await r.text()
        assert html.count('href="/cashier?room=B1-R10') == 9
        async with http.get(hmi.url + "/cashier?room=B1-R101") as r:
            html = await r.text()
        assert "20.00 CNY" in html and 'id="recharge"' in html and 'id="refund"' in html and "Opening balance" in html
        async with http.get(hmi.url + "/cashier?room=B1-R103") as r:
            html = await r.text()
        assert "This room has no prepaid account." in html and 'id="recharge"' not in html
        async with http.get(hmi.url + "/cashier?room=NOPE") as r:
            assert r.status == 404
        # entry 1 is R101's opening; entry 2 R102's: a receipt names its room
        async with http.get(hmi.url + "/cashier/receipt/B1-R101/1") as r:
            assert r.status == 200 and "20.00 CNY" in await r.text()
        for path in ("/cashier/receipt/B1-R101/2", "/cashier/receipt/B1-R101/999", "/cashier/receipt/B1-R101/x1", "/cashier/receipt/NOPE/1"):
            async with http.get(hmi.url + path) as r:
                assert r.status == 404, path
        async with http.get(hmi.url + "/rooms/B1-R102") as r:
            html = await r.text()
        assert 'data-ledger="B1-R102"' in html and "5.00" in html


async def test_accounts_and_tariffs_pages(hmi: Hmi) -> None:
    await open_accounts(hmi, {"B1-R101": "10.00"})
    async with browser_like() as http:
        await login(http, hmi.url, "cashier1")
        async with http.get(hmi.url + "/accounts?state=no_account") as r:
            html = await r.text()
        assert 'data-room="B1-R102"' in html and 'data-room="B1-R101"' not in html
        async with http.get(hmi.url + "/accounts?room=B1-R103") as r:
            html = await r.text()
        # R103 has an electricity and a water meter: both tariffs are asked for
        assert 'name="tariffs.electricity"' in html and 'name="tariffs.water"' in html and "flat-w" in html
        async with http.get(hmi.url + "/accounts?room=B1-R101") as r:
            html = await r.text()
        assert 'id="settings"' in html and 'id="close"' in html
        async with http.get(hmi.url + "/tariffs") as r:
            html = await r.text()
        assert "Flat electricity" in html and "0.60 CNY per kWh" in html
        assert "tariff-version" not in html and 'data-rooms' in html  # a cashier assigns, does not price
    async with browser_like() as eng:
        await login(eng, hmi.url, "engineer1")
        async with eng.get(hmi.url + "/tariffs") as r:
            html = await r.text()
        assert "tariff-version" in html and 'id="new-tariff"' in html and "data-rooms" not in html
        async with eng.get(hmi.url + "/accounts") as r:
            assert r.status == 403


BACK_OFFICE = ("/customers", "/charges", "/billing", "/bills", "/statements", "/adjustments", "/arrears")


async def test_prepaid_nav_follows_the_role(hmi: Hmi) -> None:
    topology = {"/meters", "/losses", "/apportionment"}  # every role may look at the meter tree
    expected = {
        "cashier1": {"/", "/cashier", "/accounts", "/alarms", "/comms", "/tariffs", "/reports", "/jobs", "/messages", *BACK_OFFICE,
                     *topology},
        "viewer1": {"/", "/alarms", "/comms", "/tariffs", "/jobs", *topology},  # no report kind is open to a viewer
        "admin": {"/", "/cashier", "/accounts", "/approvals", "/alarms", "/comms", "/tariffs", "/users", "/reports", "/jobs", "/messages",
                  *BACK_OFFICE,
                  *topology},
        "super1": {"/", "/cashier", "/accounts", "/approvals", "/alarms", "/comms", "/tariffs", "/reports", "/jobs", "/messages", *BACK_OFFICE,
                   *topology},
    }
    for user, paths in expected.items():
        async with browser_like() as http:
            await login(http, hmi.url, user)
            async with http.get(hmi.url + "/") as r:
                html = await r.text()
            async with http.get(hmi.url + "/reports") as r:  # and a role without a report kind is refused the page
                assert r.status == (200 if "/reports" in paths else 403), user
        nav = html[html.index('<nav class="mainnav"'):html.index("</nav>")]
        assert set(re.findall(r'href="([^"]+)"', nav)) == paths, user


async def test_approvals_page(hmi: Hmi) -> None:
    await open_accounts(hmi, {"B1-R101": "700.00"})  # request #1, approved by super1
    async with browser_like() as cashier:
        csrf = await login(cashier, hmi.url, "cashier1")
        headers = {"X-CSRF-Token": csrf}
        async with cashier.post(hmi.api + "/rooms/B1-R101/account/refund", json={"amount": "600", "reason": "leaves"}, headers=headers) as r:
            assert r.status == 202
            pending = await r.json()
        # meanwhile the balance drops below the refund: approved, it fails and says why
        async with cashier.post(hmi.api + "/rooms/B1-R101/account/refund", json={"amount": "200", "reason": "part"}, headers=headers) as r:
            assert r.status == 200
        async with cashier.get(hmi.url + "/approvals?state=all") as r:
            html = await r.text()
        assert f'data-approval="{pending["id"]}"' in html and "data-approve=" not in html and "another user decides" in html
        assert 'data-approval="1"' not in html  # not the cashier's request
    async with browser_like() as viewer:
        await login(viewer, hmi.url, "viewer1")
        async with viewer.get(hmi.url + "/approvals") as r:
            assert r.status == 200 and "No requests." in await r.text()
    async with browser_like() as supervisor:
        csrf = await login(supervisor, hmi.url, "super1")
        async with supervisor.get(hmi.url + "/approvals") as r:
            html = await r.text()
        assert f'data-approve="{pending["id"]}"' in html and "refund 600.00 above 500.00" in html
        async with supervisor.post(hmi.api + f"/approvals/{pending['id']}/approve", json={}, headers={"X-CSRF-Token": csrf}) as r:
            assert r.status == 200 and (await r.json())["state"] == "failed"
        async with supervisor.get(hmi.url + "/approvals?state=failed") as r:
            html = await r.text()
        assert r.status == 200 and "more than the balance" in html
        async with supervisor.get(hmi.url + "/approvals?state=nonsense") as r:
            assert r.status == 200  # an unknown filter shows the pending ones
