"""Pages over real HTTP: login (CSRF, rate limit, cookie flags), roles, logout, language,
the session-based API caller, and the headers that keep the pages to themselves."""

from __future__ import annotations

import aiohttp
from sqlalchemy import select
from yarl import URL

from scada.db.component import DATABASE
from scada.users.component import AUDIT, LOGINS, USERS
from scada.users.models import WebSession

from .conftest import ADMIN_PASSWORD, Hmi, browser_like, csrf_of, login


async def _login_page(http: aiohttp.ClientSession, hmi: Hmi) -> str:
    async with http.get(hmi.url + "/login") as r:
        assert r.status == 200
        return csrf_of(await r.text())


async def test_anonymous_is_sent_to_login(hmi: Hmi, http: aiohttp.ClientSession) -> None:
    for path in ("/", "/users", "/rooms/B1-R101"):
        async with http.get(hmi.url + path, allow_redirects=False) as r:
            assert r.status == 303
            assert r.headers["Location"].startswith("/login?next=")


async def test_login_sets_a_strict_httponly_cookie(hmi: Hmi, http: aiohttp.ClientSession) -> None:
    token = await _login_page(http, hmi)
    async with http.post(hmi.url + "/login", data={"user": "admin", "password": ADMIN_PASSWORD, "csrf": token, "next": "/rooms/B1-R101"}, allow_redirects=False) as r:
        assert r.status == 303 and r.headers["Location"] == "/rooms/B1-R101"
        cookie = r.cookies["scada_session"]
    assert cookie["httponly"] and cookie["samesite"] == "Strict" and cookie["path"] == "/"
    assert not cookie["secure"]  # plain HTTP on loopback; "auto" sets it over HTTPS
    async with hmi.rt.ctx[DATABASE].sessions() as s:
        stored = (await s.scalars(select(WebSession.id))).all()
    assert cookie.value not in stored and len(stored) == 1  # only its hash is kept


async def test_login_refuses_missing_or_wrong_csrf(hmi: Hmi, http: aiohttp.ClientSession) -> None:
    await _login_page(http, hmi)
    for data in ({"user": "admin", "password": ADMIN_PASSWORD}, {"user": "admin", "password": ADMIN_PASSWORD, "csrf": "forged-token-forged-token"}):
        async with http.post(hmi.url + "/login", data=data, allow_redirects=False) as r:
            assert r.status == 403
            assert "out of date" in await r.text()
            assert "scada_session" not in r.cookies
    async with browser_like() as other:  # no CSRF cookie at all: a cross-site form post
        async with other.post(hmi.url + "/login", data={"user": "admin", "password": ADMIN_PASSWORD, "csrf": "x" * 32}, allow_redirects=False) as r:
            assert r.status == 403
    # anonymous refusals write nothing (a forged form per second must not grow the database)
    assert await hmi.rt.ctx[AUDIT].query(action="session.login") == []


async def test_wrong_password_then_rate_limit(hmi: Hmi, http: aiohttp.ClientSession) -> None:
    token = await _login_page(http, hmi)
    for _ in range(5):
        async with http.post(hmi.url + "/login", data={"user": "operator1", "password": "wrong", "csrf": token}) as r:
            assert r.status == 401
            assert "wrong password" in await r.text()
    async with http.post(hmi.url + "/login", data={"user": "operator1", "password": "operator-password", "csrf": token}) as r:
        assert r.status == 429
        assert "Too many failed sign-ins" in await r.text()
        assert "scada_session" not in r.cookies
    # counted in memory and reported in bulk, not one audit row each
    assert await hmi.rt.ctx[AUDIT].query(action="session.login", actor="operator1") == []
    summary = hmi.rt.ctx[LOGINS].take_summary()
    assert (summary.failures, summary.refused, summary.by_user) == (5, 1, [("operator1", 5)])


async def test_login_never_redirects_off_site(hmi: Hmi) -> None:
    for target in ("//evil.example/", "https://evil.example/", "/\\evil.example", "javascript:alert(1)", "/ok\r\nSet-Cookie: x=1"):
        async with browser_like() as http:
            token = await _login_page(http, hmi)
            data = {"user": "admin", "password": ADMIN_PASSWORD, "csrf": token, "next": target}
            async with http.post(hmi.url + "/login", data=data, allow_redirects=False) as r:
                assert r.status == 303 and r.headers["Location"] == "/", target


async def test_roles_are_enforced_on_pages(hmi: Hmi, http: aiohttp.ClientSession) -> None:
    await login(http, hmi.url, "viewer1")
    async with http.get(hmi.url + "/users") as r:
        assert r.status == 403
        assert "may not manage users" in await r.text()
    async with http.get(hmi.url + "/") as r:
        assert r.status == 200
        assert 'href="/users"' not in await r.text()  # not offered in the navigation either
    async with browser_like() as admin:
        await login(admin, hmi.url, "admin")
        async with admin.get(hmi.url + "/users") as r:
            assert r.status == 200 and "cashier1" in await r.text()


async def test_logout_needs_csrf_and_ends_the_session(hmi: Hmi, http: aiohttp.ClientSession) -> None:
    csrf = await login(http, hmi.url, "operator1")
    cookie = http.cookie_jar.filter_cookies(URL(hmi.url))["scada_session"].value
    async with http.post(hmi.url + "/logout", data={}, allow_redirects=False) as r:
        assert r.status == 403
    async with http.get(hmi.url + "/", allow_redirects=False) as r:
        assert r.status == 200  # still signed in
    async with http.post(hmi.url + "/logout", data={"csrf": csrf}, allow_redirects=False) as r:
        assert r.status == 303 and r.headers["Location"] == "/login"
    # replaying the old cookie does not bring the session back
    async with aiohttp.ClientSession(cookies={"scada_session": cookie}) as replay:
        async with replay.get(hmi.url + "/", allow_redirects=False) as r:
            assert r.status == 303


async def test_language_switch_is_the_users_preference(hmi: Hmi, http: aiohttp.ClientSession) -> None:
    csrf = await login(http, hmi.url, "operator1")
    async with http.post(hmi.url + "/language", data={"lang": "zh-CN", "next": "/"}) as r:
        assert r.status == 403  # no CSRF token
    assert (await hmi.rt.ctx[USERS].get("operator1")).language == "en"  # type: ignore[union-attr]
    async with http.post(hmi.url + "/language", data={"lang": "klingon", "csrf": csrf, "next": "/"}) as r:
        assert r.status == 400 and "klingon" in await r.text()
    async with http.post(hmi.url + "/language", data={"lang": "zh-CN", "csrf": csrf, "next": "/"}) as r:
        assert r.status == 200
        html = await r.text()
    assert '<html lang="zh-CN">' in html and "房间总览" in html
    assert (await hmi.rt.ctx[USERS].get("operator1")).language == "zh-CN"  # type: ignore[union-attr]
    entries = await hmi.rt.ctx[AUDIT].query(action="user.update", target_id="operator1")
    assert entries and entries[0].after["language"] == "zh-CN" and entries[0].actor == "operator1"
    # a new browser signs in and gets the user's language
    async with browser_like() as other:
        await login(other, hmi.url, "operator1")
        async with other.get(hmi.url + "/") as r:
            assert "房间总览" in await r.text()


async def test_anonymous_language_and_accept_language(hmi: Hmi, http: aiohttp.ClientSession) -> None:
    async with http.get(hmi.url + "/login", headers={"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.8"}) as r:
        assert "<h1>登录</h1>" in await r.text()
    token = await _login_page(http, hmi)
    async with http.post(hmi.url + "/language", data={"lang": "zh-CN", "csrf": token, "next": "/login"}) as r:
        assert r.status == 200 and "<h1>登录</h1>" in await r.text()


async def test_pages_send_protective_headers(hmi: Hmi, http: aiohttp.ClientSession) -> None:
    await login(http, hmi.url, "viewer1")
    async with http.get(hmi.url + "/") as r:
        csp = r.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        assert r.headers["Cache-Control"] == "no-store"
        html = await r.text()
    assert "<script>" not in html  # no inline script: everything is a module from /static


async def test_static_assets_are_served_locally(hmi: Hmi, http: aiohttp.ClientSession) -> None:
    for path in ("/static/js/common.js", "/static/js/feed.js", "/static/js/overview.js", "/static/css/hmi.css"):
        async with http.get(hmi.url + path) as r:
            assert r.status == 200, path
            body = await r.text()
        assert "http://" not in body and "https://" not in body, f"{path} refers to another site"


async def test_overview_filters(hmi: Hmi, http: aiohttp.ClientSession) -> None:
    await login(http, hmi.url, "viewer1")
    async with http.get(hmi.url + "/?floor=B1-F2&page_size=10") as r:
        html = await r.text()
    assert 'data-room="B1-R201"' in html and 'data-room="B1-R101"' not in html
    assert "Rooms 1–10 of 15" in html and "Page 1 of 2" in html
    async with http.get(hmi.url + "/?floor=B1-F2&page_size=10&page=2") as r:
        html = await r.text()
    assert "Rooms 11–15 of 15" in html and 'data-room="B1-R215"' in html
    async with http.get(hmi.url + "/?q=r30") as r:
        html = await r.text()
    assert html.count('data-room="B1-R') == 9 and html.count('data-room="B1-R30') == 9  # R301..R309
    async with http.get(hmi.url + "/?floor=nowhere") as r:
        assert r.status == 200
        assert "The filter floor was not valid" in await r.text()
    async with http.get(hmi.url + "/?page_size=0") as r:
        assert "The filter page_size was not valid" in await r.text()


async def test_an_overloaded_link_is_shown_on_the_comms_page_and_in_the_api(hmi: Hmi, http: aiohttp.ClientSession) -> None:
    from scada.polling.component import MODBUS

    link = next(iter(hmi.rt.ctx[MODBUS].links.values()))
    link.stats.overloaded, link.stats.late_share, link.stats.polls_late = True, 0.734, 120  # as PollPace leaves them
    await login(http, hmi.url, "viewer1")
    async with http.get(hmi.url + "/comms") as r:
        html = await r.text()
    assert "overloaded: 73 % of polls late" in html
    async with http.get(hmi.api + "/links") as r:
        links = {entry["name"]: entry for entry in (await r.json())["links"]}
    assert links[link.name]["overloaded"] is True and links[link.name]["late_share"] == 0.734
    assert links[link.name]["polls_late"] == 120
    assert not any(entry["overloaded"] for name, entry in links.items() if name != link.name)


async def test_unknown_room_page(hmi: Hmi, http: aiohttp.ClientSession) -> None:
    await login(http, hmi.url, "viewer1")
    async with http.get(hmi.url + "/rooms/NOPE") as r:
        assert r.status == 404
        assert "There is no room NOPE." in await r.text()


async def test_api_with_the_session_needs_the_csrf_header(hmi: Hmi, http: aiohttp.ClientSession) -> None:
    csrf = await login(http, hmi.url, "operator1")
    async with http.get(hmi.api + "/me") as r:
        assert r.status == 200 and (await r.json())["name"] == "operator1"
    async with http.put(hmi.api + "/me/language", json={"language": "zh-CN"}) as r:
        assert r.status == 403
        assert "CSRF" in (await r.json())["error"]
    async with http.put(hmi.api + "/me/language", json={"language": "zh-CN"}, headers={"X-CSRF-Token": "wrong"}) as r:
        assert r.status == 403
    assert (await hmi.rt.ctx[USERS].get("operator1")).language == "en"  # type: ignore[union-attr]
    async with http.put(hmi.api + "/me/language", json={"language": "zh-CN"}, headers={"X-CSRF-Token": csrf}) as r:
        assert r.status == 200
    assert (await hmi.rt.ctx[USERS].get("operator1")).language == "zh-CN"  # type: ignore[union-attr]
    denied = await hmi.rt.ctx[AUDIT].query(action="api.users.set_my_language")
    assert sorted(e.outcome for e in denied) == ["denied", "denied", "ok"]
    assert {e.source for e in denied} == {"hmi"}


async def test_bearer_clients_do_not_ride_on_cookies(hmi: Hmi, http: aiohttp.ClientSession) -> None:
    await login(http, hmi.url, "admin")
    # a bad bearer token is not rescued by the session cookie sent along
    async with http.get(hmi.api + "/me", headers={"Authorization": "Bearer sct_forged"}) as r:
        assert r.status == 401
    async with aiohttp.ClientSession() as api:
        async with api.post(hmi.api + "/auth/token", json={"user": "viewer1", "password": "viewer-password"}) as r:
            token = (await r.json())["token"]
        async with api.get(hmi.api + "/me", headers={"Authorization": f"Bearer {token}"}) as r:
            assert (await r.json())["name"] == "viewer1"
        async with api.put(hmi.api + "/me/language", json={"language": "zh-CN"}, headers={"Authorization": f"Bearer {token}"}) as r:
            assert r.status == 200  # bearer clients need no CSRF token: no ambient credential
