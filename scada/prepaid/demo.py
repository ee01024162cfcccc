"""The demo's prepaid setup: a time-of-use tariff, accounts for the demo rooms with a spread
of balances, and a demo cashier that recharges a room some time after its supply was cut.

Everything goes through the engine's ordinary operations (tariff store, account opening,
recharges with channel ``demo``), so the ledger, the audit log and ``scada reconcile`` see a
demo like any other site. Seeding happens once: when the database has no tariff yet.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from decimal import Decimal

from scada.prepaid.accounts import OpenRequest
from scada.prepaid.config import DemoAccountsConfig
from scada.prepaid.engine import PrepaidEngine
from scada.prepaid.ledger import Contact
from scada.prepaid.money import to_minor
from scada.prepaid.tariff_definition import TariffDefinition
from scada.users.audit import Actor
from tags.timers import run_every

__all__ = ["DEMO_TOU", "DemoCashier", "seed_demo"]

log = logging.getLogger(__name__)

DEMO = Actor("system:demo", "engine", "system")

# The simulator's default time-of-use day (protocols.modbus.sim.tou.DEFAULT_TOU), so that the
# meters' TOU registers and the tariff agree: valley 00-08, peak 08-11, flat 11-17, peak 17-19,
# sharp 19-21, flat 21-23, valley 23-24. Prices: flat 0.60; peak 1.00; sharp 20 % above peak;
# valley 0.30 (CNY/kWh).
DEMO_TOU = {
    "tou": {
        "periods": [
            {"name": "sharp", "price": "1.20"},
            {"name": "peak", "price": "1.00"},
            {"name": "flat", "price": "0.60"},
            {"name": "valley", "price": "0.30"},
        ],
        "seasons": [{
            "name": "all_year",
            "workday": [["00:00", "valley"], ["08:00", "peak"], ["11:00", "flat"], ["17:00", "peak"],
                        ["19:00", "sharp"], ["21:00", "flat"], ["23:00", "valley"]],
        }],
    }
}


async def seed_demo(engine: PrepaidEngine, cfg: DemoAccountsConfig) -> int:
    """Create the demo tariffs and open the demo rooms' accounts; returns accounts opened."""
    if not cfg.enabled or await engine.tariffs.list():
        return 0
    definition = cfg.tariff or TariffDefinition.model_validate(DEMO_TOU)
    await engine.tariffs.create(cfg.tariff_id, cfg.tariff_name, "electricity", definition, DEMO, reason="demo")
    await engine.tariffs.create(cfg.water_tariff_id, "Water", "water", TariffDefinition.model_validate({"price": cfg.water_price}),
                                DEMO, reason="demo")
    snap = engine.assets.snapshot
    defaults = engine.defaults()
    opened = 0
    for i, room_id in enumerate(sorted(snap.rooms)):
        meters = [m for m in snap.meters_of_room(room_id) if m.role == "tenant"]
        if not meters:
            continue
        balance = cfg.balances[i % len(cfg.balances)] if cfg.balances else Decimal(0)
        settings = replace(defaults, contact=Contact(f"Tenant {snap.rooms[room_id].name}", None, None, "en"))
        water = cfg.water_tariff_id if any(m.kind == "water" for m in meters) else None
        req = OpenRequest(room_id, settings, electricity_tariff_id=cfg.tariff_id, water_tariff_id=water,
                          opening_minor=to_minor(balance, engine.minor_units), reason="demo")
        await engine.open_account(req, DEMO)
        opened += 1
    log.info("demo accounts opened", extra={"accounts": opened, "tariff": cfg.tariff_id})
    return opened


class DemoCashier:
    """Recharges a room ``after_s`` seconds after its supply went off (so the demo shows the
    whole cycle: alarm levels, cutoff, recharge, reconnect) — an ordinary recharge by ``system:demo``."""

    def __init__(self, engine: PrepaidEngine, cfg: DemoAccountsConfig) -> None:
        self.engine = engine
        self.cfg = cfg
        self._off_since: dict[str, float] = {}
        self._count = 0

    async def run(self) -> None:
        await run_every(1.0, self.step, name="demo-cashier", log_failures=False)

    async def step(self) -> None:
        """Recharge every room whose supply has been off for ``recharge_after_s``."""
        amount = to_minor(self.cfg.recharge_amount, self.engine.minor_units)
        now = time.monotonic()
        for room, view in list(self.engine.views.items()):
            if not view.open or view.supply_state != "off":
                self._off_since.pop(room, None)
                continue
            since = self._off_since.setdefault(room, now)
            if now - since >= self.cfg.recharge_after_s:
                self._count += 1
                await self.engine.recharge(room, amount, channel="demo", reference=f"demo-{room}-{int(time.time())}-{self._count}",
                                           actor=DEMO, reason="demo cashier")
                self._off_since.pop(room, None)
                log.info("demo recharge", extra={"room": room, "amount": format(self.cfg.recharge_amount, "f")})
