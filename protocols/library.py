"""The device-profile library of every protocol: Modbus register maps, DL/T 645 data identifier
maps and the metrics of meters behind MQTT gateways, side by side in one folder (``protocols/profiles``, linked from
``config/profiles``), told apart by ``[profile] protocol``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .dlt645.profile import parse_profile as parse_dlt645
from .modbus.profile import ProfileError, ProfileLibrary, ProfileParser, read_profile_file, shipped_profiles_dir
from .modbus.profile import parse_profile as parse_modbus
from .mqtt.profile import parse_profile as parse_mqtt

__all__ = ["PARSERS", "check_profile_file", "load_library", "profile_protocol"]

PARSERS: dict[str, ProfileParser] = {"modbus": parse_modbus, "dlt645": parse_dlt645, "mqtt": parse_mqtt}


def load_library(*folders: str | Path) -> ProfileLibrary:
    """Every profile of ``folders`` (default: the shipped ones), of every protocol."""
    return ProfileLibrary.load(*(folders or (shipped_profiles_dir(),)), parsers=PARSERS)


def check_profile_file(path: str | Path) -> Any:
    """Parse one profile file of any protocol; raises :class:`ProfileError` naming every problem."""
    path = Path(path)
    protocol, data = read_profile_file(path)
    parser = PARSERS.get(protocol)
    if parser is None:
        raise ProfileError(str(path), [f"profile.protocol: unknown protocol {protocol!r} (known: {', '.join(PARSERS)})"])
    return parser(data, str(path), path.stem)


def profile_protocol(profile: Any) -> str:
    """``modbus``, ``dlt645`` or ``mqtt``: the protocol a parsed profile is for."""
    return str(getattr(profile, "protocol", "modbus"))
