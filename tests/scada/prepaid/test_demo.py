"""The demo's prepaid setup: tariffs on the simulator's TOU hours, accounts with a spread of
balances, and the demo cashier's recharges (ordinary, audited ledger entries)."""

from __future__ import annotations

import asyncio
from decimal import Decimal

from protocols.modbus.sim.tou import DEFAULT_TOU
from scada.config import load_demo_config
from scada.prepaid.demo import DEMO_TOU, DemoCashier, seed_demo
from scada.prepaid.tariff_definition import TariffDefinition
from scada.users.audit import Actor

from .conftest import Site


def test_demo_tariff_uses_the_simulator_tou_hours() -> None:
    workday = DEMO_TOU["tou"]["seasons"][0]["workday"]  # type: ignore[index]
    assert [tuple(x) for x in workday] == [tuple(x) for x in DEFAULT_TOU]
    assert TariffDefinition.model_validate(DEMO_TOU).kind == "tou"


def test_demo_config_makes_rooms_run_down_and_back() -> None:
    cfg = load_demo_config().prepaid
    assert cfg.demo.enabled and min(cfg.demo.balances) > 0
    low = min(t.money for t in cfg.defaults.thresholds if t.money is not None and t.level == 1)
    assert any(b > low for b in cfg.demo.balances)  # some room starts above "low" and passes every level


async def test_seed_opens_every_room_once(site: Site) -> None:
    cfg = load_demo_config().prepaid.demo.model_copy(update={"balances": [Decimal("100"), Decimal("6")]})
    assert await seed_demo(site.engine, cfg) == 3
    assert await seed_demo(site.engine, cfg) == 0  # once: the tariffs exist now
    views = {v.room_id: v for v in await site.engine.accounts.open_accounts()}
    assert {r: v.balance_minor for r, v in views.items()} == {"R1": 10_000, "R2": 600, "R3": 10_000}
    assert views["R2"].water_tariff_id == cfg.water_tariff_id and views["R1"].water_tariff_id is None
    assert views["R1"].contact.name == "Tenant R1"


async def test_demo_cashier_recharges_a_cut_room(site: Site) -> None:
    cfg = load_demo_config().prepaid.demo.model_copy(update={"recharge_after_s": 0.05, "recharge_amount": Decimal("50")})
    await seed_demo(site.engine, cfg)
    # the supply of R1 went off (as the command path would record it)
    view = site.engine.views["R1"]
    off = await site.engine.accounts.set_supply(view.id, "off", reconnect_pending=False, actor=Actor.system("test"), reason="test")
    assert off is not None
    site.engine.views["R1"] = off
    task = asyncio.create_task(DemoCashier(site.engine, cfg).run(), name="demo-cashier")
    try:
        for _ in range(300):
            if (await site.engine.account("R1")).balance_minor == 15_000:  # type: ignore[union-attr]
                break
            await asyncio.sleep(0.01)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    _, entries = await site.engine.ledger("R1")
    assert [(e.kind, e.channel, e.actor) for e in entries[:1]] == [("recharge", "demo", "system:demo")]
