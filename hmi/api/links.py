"""Communications: ``/links`` (each link's state and request statistics: Modbus, DL/T 645 and
MQTT gateways) and ``/links/{link}/devices`` (its meters' statistics), read through
``scada.polling.component`` (``COMMS``)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from scada.polling.component import COMMS

from ..keys import CONTEXT
from .router import API_QUERY, ApiCall, ApiError, ApiRouter

__all__ = ["link_json", "router"]

router = ApiRouter("links")


class DeviceQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    state: Literal["online", "offline", "unknown", "config_error"] | None = Field(default=None, description="only devices in this state")


def link_json(stats: Any) -> dict[str, Any]:
    out = asdict(stats)
    if out.get("latency_ms") is not None:
        out["latency_ms"] = round(out["latency_ms"], 2)
    out["max_latency_ms"] = round(out["max_latency_ms"], 2)
    return out


def _poller(call: ApiCall[Any]) -> Any:
    poller = call.request.app[CONTEXT].get(COMMS)
    if poller is None:
        raise ApiError(503, "the meters' communications are not running on this server")
    return poller


@router.get("/links", audit=False, summary="Every link: state, connections, requests, errors by kind, latency, devices offline, polls late (overloaded)")
async def list_links(call: ApiCall[Any]) -> dict[str, Any]:
    return {"links": [link_json(s) for s in sorted(_poller(call).link_stats(), key=lambda s: s.name)]}


@router.get("/links/{link}/devices", query=DeviceQuery, audit=False, summary="The meters of a link with their request statistics")
async def link_devices(call: ApiCall[Any]) -> dict[str, Any]:
    poller = _poller(call)
    name = call.params["link"]
    link = next((s for s in poller.link_stats() if s.name == name), None)
    if link is None:
        raise ApiError(404, f"unknown link {name!r}", field="link")
    q = call.request[API_QUERY]
    assert isinstance(q, DeviceQuery)
    devices = [d for d in poller.device_stats() if d.link == name and (q.state is None or d.state == q.state)]
    devices.sort(key=lambda d: (d.unit_id, d.address or "", d.circuit or 0, d.meter_id))
    return {"link": link_json(link), "devices": [link_json(d) for d in devices]}
