"""Browse names, engineering units and the site spec's own checks."""

from __future__ import annotations

import pytest

from protocols.opcua.model import (
    BuildingSpec,
    FloorSpec,
    MeterSpec,
    RoomSpec,
    SiteSpec,
    browse_name,
)
from protocols.opcua.units import UNECE_NAMESPACE, eu_information, unece_unit_id


@pytest.mark.parametrize(
    ("point", "name"),
    [("energy_total", "EnergyTotal"), ("comm_ok", "CommOk"), ("power_factor", "PowerFactor"),
     ("relay_closed", "RelayClosed"), ("volume_total", "VolumeTotal"), ("valve_open", "ValveOpen"),
     ("balance", "Balance"), ("supply_state", "SupplyState"), ("alarm_level", "AlarmLevel"),
     ("active_alarms", "ActiveAlarms"), ("energy_sharp", "EnergySharp")],
)
def test_points_are_pascal_case(point: str, name: str) -> None:
    assert browse_name(point) == name


def test_unece_codes() -> None:
    assert unece_unit_id("KWH") == 4937544  # Part 8 §5.6.3 example: "KWH"
    eu = eu_information("kWh", "urn:x")
    assert eu is not None and eu.NamespaceUri == UNECE_NAMESPACE and eu.UnitId == 4937544
    assert eu.DisplayName.Text == "kWh"
    m3 = eu_information("m3", "urn:x")
    assert m3 is not None and m3.DisplayName.Text == "m³" and m3.UnitId == unece_unit_id("MTQ")
    currency = eu_information("CNY", "urn:ours")
    assert currency is not None and currency.UnitId == -1 and currency.NamespaceUri == "urn:ours"
    assert eu_information("", "urn:x") is None


def test_site_check_names_dangling_references() -> None:
    site = SiteSpec("S", buildings={"B1": BuildingSpec("B1", "B")}, floors={"F1": FloorSpec("F1", "B1", "F1")})
    site.rooms["R1"] = RoomSpec("R1", "F9", "R1")
    with pytest.raises(ValueError, match="room 'R1': unknown floor 'F9'"):
        site.check()
    site.rooms["R1"] = RoomSpec("R1", "F1", "R1")
    site.meters["M1"] = MeterSpec("M1", "electricity", "B1", "R7")
    with pytest.raises(ValueError, match="meter 'M1': unknown room 'R7'"):
        site.check()
