"""The site's address space, browsed by a real asyncua client, against a recorded snapshot.

The snapshot (``site_browse.json`` beside this file) was recorded from the node writer as it was
before its build was made faster (branch ``opcua50``); every change to how nodes are written must
leave what a client sees the same: node ids, node classes, browse, display names and descriptions,
every reference both ways (type, direction, target, its browse name, node class and type
definition) and the order of the forward ones, data types, value ranks, array dimensions, access levels, historizing, event
notifiers, executability and the values of properties. Variables' live values (timestamps) are left
out. Regenerate deliberately with ``SCADA_UPDATE_SNAPSHOT=1`` and review the diff.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from asyncua import Client, ua

from protocols.opcua import LinkSpec, MeterSpec, OpcUaConfig, OpcUaServer, PointSpec, RoomSpec, SeriesKind, SiteSpec
from tags import DataType, Quality, TagValue

from .conftest import Recorder, meter_points, room_points, small_site

SNAPSHOT = Path(__file__).with_name("site_browse.json")
A = ua.AttributeIds
_ATTRS = (
    A.NodeClass, A.BrowseName, A.DisplayName, A.Description, A.WriteMask, A.UserWriteMask, A.EventNotifier,
    A.DataType, A.ValueRank, A.ArrayDimensions, A.AccessLevel, A.UserAccessLevel, A.MinimumSamplingInterval,
    A.Historizing, A.Executable, A.UserExecutable,
)


class _History:
    """Says which tags are historized; no read reaches it in this test."""

    def kind(self, tag: str) -> SeriesKind | None:
        return SeriesKind.INCREMENTS if tag.endswith(".energy_total") else None

    async def read(self, tag: str, start_us: int, end_us: int, *, limit: int, descending: bool, stat: Any) -> Any:
        raise AssertionError("not read here")

    async def allowed(self, caller: Any) -> bool:
        return False


def snapshot_site() -> SiteSpec:
    """The small site plus what else the writer builds: links with points, a historized point,
    a second meter per room, rooms and meters whose browse names collide (named by their id),
    a meter without points, a point with a unit the catalogue does not know."""
    site = small_site()
    history = _History()
    for mid, meter in list(site.meters.items()):
        site.meters[mid] = replace(meter, points=tuple(replace(p, history=history.kind(p.tag)) for p in meter.points))
    site.rooms["B1-R101b"] = RoomSpec("B1-R101b", "B1-F1", "R101", points=room_points("B1-R101b"))
    site.meters["E-B1-R101b"] = MeterSpec("E-B1-R101b", "electricity", "B1", "B1-R101b", points=meter_points("E-B1-R101b", "electricity"))
    site.meters["E-EMPTY"] = MeterSpec("E-EMPTY", "electricity", "B2", None, description="no points yet")
    site.meters["E-ODD"] = MeterSpec("E-ODD", "electricity", "B2", None, points=(
        PointSpec("E-ODD.power", "power", DataType.FLOAT, "furlong", "a unit nobody knows"),
        PointSpec("E-ODD.note", "note", DataType.STRING, "", "free text"),
        PointSpec("E-ODD.count", "count", DataType.INT, "", ""),
    ))
    site.links["gw-1"] = LinkSpec("gw-1", "Gateway one", (PointSpec("link:gw-1.comm_ok", "comm_ok", DataType.BOOL, "", "link answers"),))
    site.links["gw-2"] = LinkSpec("gw-2")
    return site


@pytest.fixture(params=[True, False], ids=["lazy", "eager"])
async def history_server(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[OpcUaServer]:
    # built lazily (as the server runs) and eagerly: the same browse, reference order included
    config = OpcUaConfig(port=0, security=["None", "Basic256Sha256_SignAndEncrypt"], allow_anonymous=True, application_uri="urn:test:scada")
    hooks = replace(Recorder().hooks(), history=_History())
    srv = OpcUaServer(config, pki_dir=tmp_path / "pki", hooks=hooks, lazy_nodes=request.param)
    await srv.start()
    try:
        t0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
        value = TagValue(1.5, Quality.GOOD, t0, t0)
        await srv.sync(snapshot_site(), lambda tag: value if tag.endswith(".power") else None)
        yield srv
    finally:
        await srv.stop()


def _plain(value: Any) -> Any:
    """A JSON-able, namespace-index-free form of what the client read."""
    if isinstance(value, ua.NodeId):
        return f"ns{value.NamespaceIndex}:{value.Identifier}"
    if isinstance(value, ua.QualifiedName):
        return f"{value.NamespaceIndex}:{value.Name}"
    if isinstance(value, ua.LocalizedText):
        return value.Text
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, ua.StatusCode):
        return value.name
    if hasattr(value, "__dataclass_fields__"):
        return {k: _plain(getattr(value, k)) for k in value.__dataclass_fields__}
    if isinstance(value, (int, float, str, bool)) or value is None:
        return value
    return repr(value)


async def browse(client: Client, root: ua.NodeId) -> dict[str, Any]:
    """Every node reached from ``root`` by forward hierarchical references, with its attributes
    and all its references."""
    out: dict[str, Any] = {}
    stack = [root]
    while stack:
        nid = stack.pop()
        key = _plain(nid)
        if key in out:
            continue
        node = client.get_node(nid)
        values = await node.read_attributes(list(_ATTRS))
        attrs: dict[str, Any] = {}
        for attr, dv in zip(_ATTRS, values, strict=True):
            attrs[attr.name] = _plain(dv.Value.Value) if dv.StatusCode.is_good() and dv.Value is not None else dv.StatusCode.name
        node_class = attrs["NodeClass"]
        value = await node.read_attribute(A.Value, raise_on_bad_status=False)
        if node_class == ua.NodeClass.Variable and value.Value is not None:
            attrs["ValueType"] = value.Value.VariantType.name
            if nid.Identifier.__class__ is str and "/" in nid.Identifier:  # properties: constant values
                attrs["Value"] = _plain(value.Value.Value)
        refs = await node.get_references(refs=ua.ObjectIds.References, direction=ua.BrowseDirection.Both)
        attrs["references"] = sorted(
            [_plain(r.ReferenceTypeId), r.IsForward, _plain(r.NodeId), _plain(r.BrowseName), r.NodeClass.name, _plain(r.TypeDefinition)]
            for r in refs
        )
        attrs["children"] = [_plain(r.NodeId) for r in refs if r.IsForward and r.ReferenceTypeId != ua.NodeId(ua.ObjectIds.HasTypeDefinition)]
        out[key] = attrs
        for r in refs:
            if r.IsForward and r.NodeId.NamespaceIndex == root.NamespaceIndex and r.ReferenceTypeId in (
                ua.NodeId(ua.ObjectIds.Organizes), ua.NodeId(ua.ObjectIds.HasComponent), ua.NodeId(ua.ObjectIds.HasProperty),
                ua.NodeId(ua.ObjectIds.HasNotifier),
            ):
                stack.append(r.NodeId)
    return dict(sorted(out.items()))


def _normalise(tree: dict[str, Any], ns: int) -> dict[str, Any]:
    # our namespace's index depends on what the server registered before it
    text = json.dumps(tree, sort_keys=True).replace(f'"ns{ns}:', '"nsX:').replace(f'"{ns}:', '"X:')
    return json.loads(text)  # type: ignore[no-any-return]


async def test_the_site_browses_exactly_as_recorded(history_server: OpcUaServer) -> None:
    async with Client(history_server.url) as client:
        tree = _normalise(await browse(client, ua.NodeId("site", history_server.ns)), history_server.ns)
    if os.environ.get("SCADA_UPDATE_SNAPSHOT"):
        SNAPSHOT.write_text(json.dumps(tree, indent=1, sort_keys=True) + "\n")
    recorded = json.loads(SNAPSHOT.read_text())
    assert sorted(tree) == sorted(recorded)
    for key, attrs in recorded.items():
        assert tree[key] == attrs, key
