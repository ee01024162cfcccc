import pytest

from tags.names import TagName, link_tag, meter_tag, parse, room_tag, system_tag


def test_round_trip() -> None:
    assert parse(meter_tag("E-B1-0301", "energy_total")) == TagName("meter", "E-B1-0301", "energy_total")
    assert parse(room_tag("B1-R301", "balance")) == TagName("room", "B1-R301", "balance")
    assert parse(link_tag("gw-1", "comm_ok")) == TagName("link", "gw-1", "comm_ok")
    assert parse(system_tag("historian", "buffer_fill")) == TagName("system", "historian", "buffer_fill")


@pytest.mark.parametrize("bad", ["nodot", ".x", "x.", "bogus:a.b"])
def test_bad_names(bad: str) -> None:
    with pytest.raises(ValueError):
        parse(bad)
