"""Engineering units as OPC UA ``EUInformation`` (UNECE Recommendation 20 codes, Part 8 §5.6.3).

A unit we know is published with the UNECE namespace and its code, so a client can convert it;
one we do not know (or a currency) keeps its text as the display name with ``UnitId = -1``.
"""

from __future__ import annotations

import functools

from asyncua import ua

__all__ = ["UNECE_NAMESPACE", "eu_information", "unece_unit_id"]

UNECE_NAMESPACE = "http://www.opcfoundation.org/UA/units/un/cefact"

# our unit text → (UNECE common code, display name, description)
_UNITS: dict[str, tuple[str, str, str]] = {
    "kWh": ("KWH", "kWh", "kilowatt hour"),
    "Wh": ("WHR", "Wh", "watt hour"),
    "kW": ("KWT", "kW", "kilowatt"),
    "W": ("WTT", "W", "watt"),
    "kvar": ("KVR", "kvar", "kilovar"),
    "kVA": ("KVA", "kVA", "kilovolt - ampere"),
    "kvarh": ("K3", "kvarh", "kilovolt ampere (reactive) hour"),
    "V": ("VLT", "V", "volt"),
    "A": ("AMP", "A", "ampere"),
    "Hz": ("HTZ", "Hz", "hertz"),
    "m3": ("MTQ", "m³", "cubic metre"),
    "m³": ("MTQ", "m³", "cubic metre"),
    "m3/h": ("MQH", "m³/h", "cubic metre per hour"),
    "m³/h": ("MQH", "m³/h", "cubic metre per hour"),
    "L": ("LTR", "l", "litre"),
    "%": ("P1", "%", "percent"),
    "°C": ("CEL", "°C", "degree Celsius"),
    "degC": ("CEL", "°C", "degree Celsius"),
    "s": ("SEC", "s", "second"),
}


def unece_unit_id(code: str) -> int:
    """Part 8 §5.6.3: the code's characters packed into an Int32, first character highest."""
    unit_id = 0
    for ch in code:
        unit_id = (unit_id << 8) | ord(ch)
    return unit_id


@functools.cache
def eu_information(unit: str, namespace_uri: str) -> ua.EUInformation | None:
    """The EUInformation for our unit text, ``None`` for a dimensionless value ("")."""
    unit = unit.strip()
    if not unit:
        return None
    known = _UNITS.get(unit)
    if known is not None:
        code, display, description = known
        return ua.EUInformation(
            NamespaceUri=UNECE_NAMESPACE,
            UnitId=unece_unit_id(code),
            DisplayName=ua.LocalizedText(display),
            Description=ua.LocalizedText(description),
        )
    # not in UNECE (e.g. a currency): our namespace, no numeric id
    return ua.EUInformation(
        NamespaceUri=namespace_uri, UnitId=-1, DisplayName=ua.LocalizedText(unit), Description=ua.LocalizedText(unit)
    )
