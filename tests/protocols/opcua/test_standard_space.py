"""Namespace 0 is filled once per process and copied for every later server: a copy equals the
fill, and what one server changes in its standard nodes (its namespace array, its status) is
not seen by another."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from asyncua import Client, Server, ua

from protocols.opcua import OpcUaConfig, OpcUaServer, standard_space
from protocols.opcua.standard_space import copy_nodes

from .conftest import Recorder, small_site


async def test_a_copy_equals_the_nodes_and_shares_nothing_changeable() -> None:
    server = Server()
    await server.init()  # asyncua's own fill and set-up, no template involved
    nodes = server.iserver.aspace._nodes
    copied = copy_nodes(nodes)
    assert copied.keys() == nodes.keys() and len(nodes) > 6000
    for nodeid, node in nodes.items():
        c = copied[nodeid]
        assert c is not node and c.references == node.references and c.references is not node.references
        assert c.attributes.keys() == node.attributes.keys()
        for key, held in node.attributes.items():
            assert c.attributes[key] is not held and c.attributes[key].value == held.value
            assert c.attributes[key].value is not held.value
    namespaces = ua.NodeId(ua.ObjectIds.Server_NamespaceArray)
    copied_list = copied[namespaces].attributes[ua.AttributeIds.Value].value.Value.Value  # type: ignore[union-attr]
    original_list = nodes[namespaces].attributes[ua.AttributeIds.Value].value.Value.Value  # type: ignore[union-attr]
    copied_list.append("urn:only-in-the-copy")
    assert "urn:only-in-the-copy" not in original_list


def _config(uri: str) -> OpcUaConfig:
    return OpcUaConfig(
        port=0, security=["None", "Basic256Sha256_SignAndEncrypt"], allow_anonymous=True,
        application_uri=f"urn:test:{uri}", namespace_uri=f"urn:test:{uri}:site",
    )


async def _standard_view(url: str) -> tuple[list[str], list[str], ua.ServerState]:
    async with Client(url) as client:
        namespaces = await client.get_namespace_array()
        children = sorted(n.nodeid.to_string() for n in await client.nodes.server.get_children())
        state = await client.nodes.server.get_child(["0:ServerStatus", "0:State"])
        return namespaces, children, await state.read_value()


def _values(nodes: dict[ua.NodeId, Any]) -> dict[tuple[ua.NodeId, Any], Any]:
    """What a server could change in ``nodes``: each node's references (the shared descriptions'
    fields too), each attribute's data value (by identity: a write replaces it) and, deeply, the
    values that can change in place."""
    out: dict[tuple[Any, Any], Any] = {}
    for nodeid, node in nodes.items():
        out[(nodeid, None)] = tuple(
            (id(r), r.ReferenceTypeId, r.IsForward, r.NodeId, r.BrowseName, r.DisplayName, r.NodeClass, r.TypeDefinition)
            for r in node.references
        )
        for key, held in node.attributes.items():
            dv = held.value
            changeable = dv is not None and dv.Value is not None and not isinstance(dv.Value.Value, standard_space._SHARED_VALUES)
            out[(nodeid, key)] = (id(dv), copy.deepcopy(dv.Value.Value) if changeable else None)  # type: ignore[union-attr]
    return out


async def test_servers_after_the_first_get_their_own_copy(tmp_path: Path) -> None:
    first = OpcUaServer(_config("first"), pki_dir=tmp_path / "pki", hooks=Recorder().hooks())
    await first.start()
    template = standard_space._template
    assert template is not None  # this server or an earlier one filled it
    before = _values(template)
    second = OpcUaServer(_config("second"), pki_dir=tmp_path / "pki", hooks=Recorder().hooks())
    await second.start()
    try:
        await first.sync(small_site(), lambda _tag: None)
        await second.sync(small_site(), lambda _tag: None)
        ns_1, children_1, state_1 = await _standard_view(first.url)
        ns_2, children_2, state_2 = await _standard_view(second.url)
    finally:
        await first.stop()
        await second.stop()
    assert "urn:test:first:site" in ns_1 and "urn:test:second:site" not in ns_1
    assert "urn:test:second:site" in ns_2 and "urn:test:first:site" not in ns_2
    assert children_1 == children_2 and len(children_1) > 10
    assert state_1 == state_2 == ua.ServerState.Running
    assert _values(template) == before  # neither server's set-up or sync reached the template
