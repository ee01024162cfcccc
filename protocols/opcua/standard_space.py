"""The OPC UA standard address space (namespace 0), filled once per process and copied after.

asyncua fills a server's standard nodes (~6,200 nodes, ~74,000 attribute values) by running its
generated ``fill_address_space`` through the node-management service: 1.2-1.5 s of CPU at every
server start. ``scada run`` starts one server, but a process that starts several (the test
suite's workers start dozens) pays it each time; so the first fill is kept as a template and
later servers get a copy of it (~0.1-0.2 s).

The copy shares only what no one changes in place: node ids, the attribute keys, the reference
descriptions and the variants of immutable values (numbers, strings, node ids, names). Every
node, attribute holder and data value is new, and a value that can be changed in place (a list,
such as the namespace array that ``register_namespace`` appends to; a structure, such as the
server status) is copied deeply. Callbacks are not copied: the standard fill sets none, and the
server sets its own after the fill, on its own copy.
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import enum
import threading
from collections.abc import Callable
from typing import Any

from asyncua import ua
from asyncua.server.address_space import AttributeValue, NodeData
from asyncua.server.internal_server import InternalServer
from asyncua.server.standard_address_space import standard_address_space

__all__ = ["copy_nodes", "install"]

Nodes = dict[ua.NodeId, NodeData]

# values that nothing changes in place: a copied variant may share them
_SHARED_VALUES = (int, float, str, bytes, bool, type(None), enum.Enum, dt.datetime, ua.NodeId, ua.QualifiedName, ua.LocalizedText)

_DATA_VALUE_SLOTS: tuple[str, ...] = ua.DataValue.__slots__

_template: Nodes | None = None
_template_lock = threading.Lock()


def _data_value(dv: ua.DataValue | None) -> ua.DataValue | None:
    if dv is None:
        return None
    variant = dv.Value
    out = object.__new__(ua.DataValue)
    for name in _DATA_VALUE_SLOTS:
        setattr(out, name, getattr(dv, name))
    if variant is not None and not isinstance(variant.Value, _SHARED_VALUES):
        out.Value = copy.deepcopy(variant)
    return out


def copy_nodes(nodes: Nodes) -> Nodes:
    """A copy of ``nodes`` that shares nothing another server could change (see the module)."""
    out: Nodes = {}
    new_node, new_attribute = NodeData.__new__, AttributeValue.__new__
    for nodeid, node in nodes.items():
        c = new_node(NodeData)
        c.nodeid = node.nodeid
        c.call = None
        c.references = list(node.references)
        attributes = {}
        for key, held in node.attributes.items():
            a = new_attribute(AttributeValue)
            a.value = _data_value(held.value)
            a.value_callback = None
            a.value_setter = None
            a.datachange_callbacks = {}
            attributes[key] = a
        c.attributes = attributes
        out[nodeid] = c
    return out


def _fill(iserver: InternalServer, fill: Callable[[Any], None]) -> None:
    """Runs in a worker thread, before the server's own set-up touches its address space."""
    global _template
    with _template_lock:
        template = _template
    if template is not None:
        iserver.aspace._nodes.update(copy_nodes(template))
        return
    fill(iserver.node_mgt_service)
    kept = copy_nodes(iserver.aspace._nodes)
    with _template_lock:
        _template = kept


def install(iserver: InternalServer) -> None:
    """Have ``iserver.init()`` take its standard nodes from this process's template (filling it
    on the first call). Call before ``Server.init()``."""
    async def load_standard_address_space(shelf_file: Any = None) -> None:
        await asyncio.to_thread(_fill, iserver, standard_address_space.fill_address_space)

    iserver.load_standard_address_space = load_standard_address_space  # type: ignore[method-assign]
