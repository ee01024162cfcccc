"""The site's nodes: ``Objects/Site/<Building>/<Floor>/<Room>/<Meter>/<Point>``, kept in step
with a :class:`SiteSpec`, and the tag → node index that live values go through.

Node ids are readable and stable: ``building:B1``, ``floor:B1-F1``, ``room:B1-R101``,
``meter:E-B1-101``, ``links``/``link:gw-1``, and every variable's id is the name of the tag that
feeds it (``E-B1-101.energy_total``, ``room:B1-R101.balance``). Common-area meters (no room) hang
under their building; the poller's links under ``Site/Links``. Browse names are the registry's
names; where two siblings would share one, the later one is named by its id.

The folders (``Site``, buildings, floors, ``Links``) are event notifiers: ``Server`` HasNotifier
``Site`` (which ``Objects`` organizes), and each folder hangs under its parent folder by
HasNotifier. An alarm event of a meter reaches the subscribers of ``Server``, ``Site``, its
building and its floor.

Rooms and meters are built lazily: a sync adds the object nodes (and so the whole tree of
objects a client browses), while each object's variables and methods wait until something first
touches the object (a browse of it, a path through it) or looks up one of their node ids (a read,
a monitored item, a method call, a history read). Until then a change to one of those tags is
kept as the value the variable starts from. Browse names and the order of references are the
ones an eager build gives (``tests/protocols/opcua/test_address_space_snapshot.py``). At 50,000
meters the eager build was 1.9 million nodes and most of the server's start-up; a client that
reads or subscribes to a thousand points builds the few dozen meters they belong to.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from asyncua import ua

from tags import DataType, TagChange, TagValue
from tags.slices import Slicer

from .model import LinkSpec, MeterSpec, PointSpec, RoomSpec, SeriesKind, SiteSpec
from .nodes import NodeWriter, ObjectNode, RefType, ValueAttribute
from .status import VARIANT_TYPES, data_value
from .types import (
    DATA_TYPES,
    RECHARGE_INPUTS,
    RECHARGE_OUTPUTS,
    SET_RELAY_INPUTS,
    SET_RELAY_OUTPUTS,
    TypeIds,
)
from .units import eu_information

__all__ = ["SERVER_NODE", "SiteNodes", "SyncResult"]

log = logging.getLogger(__name__)

_FOLDER = ua.NodeId(ua.ObjectIds.FolderType)
_ANALOG = ua.NodeId(ua.ObjectIds.BaseAnalogType)
_DATA_VARIABLE = ua.NodeId(ua.ObjectIds.BaseDataVariableType)
_EU_TYPE = ua.NodeId(ua.ObjectIds.EUInformation)
_ARGUMENT = ua.NodeId(ua.ObjectIds.Argument)
_OBJECTS = ObjectNode(
    ua.NodeId(ua.ObjectIds.ObjectsFolder), ua.QualifiedName("Objects", 0), ua.LocalizedText("Objects"),
    ua.NodeClass.Object, _FOLDER,
)
_SERVER = ObjectNode(
    ua.NodeId(ua.ObjectIds.Server), ua.QualifiedName("Server", 0), ua.LocalizedText("Server"),
    ua.NodeClass.Object, ua.NodeId(ua.ObjectIds.ServerType),
)
SERVER_NODE = _SERVER.nodeid
_NOTIFIER_KINDS = ("site", "building", "floor", "links")
# a notifier folder hangs under its notifier parent by HasNotifier (hierarchical, so it browses
# like Organizes; both would show each folder twice in a hierarchical browse)
_NOTIFIER: dict[str, Any] = {"notifier": True, "ref_type": RefType.HAS_NOTIFIER}
_YIELD_EVERY = 2_000  # updates between returns to the event loop
LookupValue = Callable[[str], TagValue | None]
# an object's point that waits for the object's first touch: the point, its browse name (given
# when the point came, as an eager build would have), where its first value comes from
_Deferred = tuple[PointSpec, str, LookupValue]


def _no_value(_tag: str) -> TagValue | None:
    return None


class _Var(ValueAttribute):
    """A variable's Value attribute and what pushing a tag change into it needs."""

    __slots__ = ("vtype", "derived", "owner")

    def __init__(self, value: ua.DataValue, vtype: ua.VariantType, derived: bool, owner: str) -> None:
        super().__init__(value)
        self.vtype = vtype
        self.derived = derived
        self.owner = owner  # object key


@dataclass(frozen=True, slots=True)
class SyncResult:
    added: int  # nodes
    removed: int
    meters_added: tuple[str, ...] = ()
    meters_removed: tuple[str, ...] = ()
    slices: int = 1  # stretches of the event loop's time the build took (returns to the loop + 1)
    deferred: int = 0  # points whose nodes wait for their object's first touch

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.deferred)


def _structure(spec: Any) -> Any:
    # what decides where and how an object is built; points are reconciled separately
    if isinstance(spec, (MeterSpec, RoomSpec, LinkSpec)):
        return replace(spec, points=())
    return spec


class SiteNodes:
    def __init__(
        self,
        writer: NodeWriter,
        ns: int,
        types: TypeIds,
        namespace_uri: str,
        *,
        set_relay: Callable[..., Any],
        recharge: Callable[..., Any],
        history_configs: dict[SeriesKind, ua.NodeId] | None = None,
        lazy: bool = True,
    ) -> None:
        self.writer = writer
        # lazy: a room's or meter's variables and methods are built when a client first touches
        # the object or one of them (see the module docstring), not by the sync
        self.lazy = lazy
        self.history_configs = history_configs or {}
        self.ns = ns
        self.types = types
        self.namespace_uri = namespace_uri
        self._set_relay = set_relay
        self._recharge = recharge
        self._objects: dict[str, ObjectNode] = {}  # key (= node id string) → node
        self._built: dict[str, Any] = {}  # key → structural spec it was built from
        self._names: dict[str, set[str]] = {}  # parent key → browse names of its children
        self._vars: dict[str, _Var] = {}  # tag → variable
        self._owned: dict[str, list[str]] = {}  # object key → tags of its variables
        self._by_nodeid: dict[ua.NodeId, str] = {}  # meter/room object node → meter/room id
        self._eu_attrs: dict[str, ValueAttribute] = {}
        self._arg_attrs: dict[str, ValueAttribute] = {}
        self._mismatch_logged: set[str] = set()
        self._waiting_values: dict[bool, ua.DataValue] = {}
        self._deferred: dict[str, list[_Deferred]] = {}  # object key → what waits below it
        self._deferred_tags: dict[str, str] = {}  # tag of a waiting variable → its object's key
        self._early: dict[str, TagValue] = {}  # the last value pushed to a waiting variable
        self.updates = 0
        self.built_late = 0  # objects whose children a touch built
        if lazy:
            writer.resolve_missing(self._resolve)

    # -- lookups -------------------------------------------------------------------------------
    def nodeid(self, key: str) -> ua.NodeId:
        return ua.NodeId(key, self.ns)

    def meter_of(self, nodeid: ua.NodeId) -> str | None:
        key = self._by_nodeid.get(nodeid)
        return key[len("meter:"):] if key and key.startswith("meter:") else None

    def room_of(self, nodeid: ua.NodeId) -> str | None:
        key = self._by_nodeid.get(nodeid)
        return key[len("room:"):] if key and key.startswith("room:") else None

    def has_tag(self, tag: str) -> bool:
        return tag in self._vars or tag in self._deferred_tags

    def has_object(self, key: str) -> bool:
        return key in self._objects

    def object_name(self, key: str) -> str | None:
        """The browse name of one of our objects (``meter:E-1`` → ``E-1``)."""
        node = self._objects.get(key)
        return node.browse_name.Name if node is not None else None

    def notifiers(self, key: str) -> list[ua.NodeId]:
        """The event notifiers an event of the object ``key`` reaches: ``Server`` and the
        folders above the object (itself included when it is a folder)."""
        out = [SERVER_NODE]
        current: str | None = key
        chain: list[ua.NodeId] = []
        while current is not None:
            if current.partition(":")[0] in _NOTIFIER_KINDS and current in self._objects:
                chain.append(self._objects[current].nodeid)
            current = self._parent_key(current) if current in self._objects else None
        out.extend(reversed(chain))
        return out

    def has_node(self, key: str) -> bool:
        """Any node of ours by its id string (``meter:E-1/SetRelay``)."""
        return self.nodeid(key) in self.writer.aspace

    @property
    def tags(self) -> list[str]:
        return [*self._vars, *self._deferred_tags]

    @property
    def meters(self) -> list[str]:
        return [k[6:] for k in self._objects if k.startswith("meter:")]

    def value(self, tag: str) -> ua.DataValue | None:
        owner = self._deferred_tags.get(tag)
        if owner is not None:
            self.writer.build_waiting(self._objects[owner].data)
        var = self._vars.get(tag)
        return var.value if var is not None else None

    def waiting(self, key: str) -> bool:
        """Whether the object ``key``'s variables and methods wait for a first touch."""
        return key in self._deferred

    def _resolve(self, nodeid: ua.NodeId) -> bool:
        """A node id the address space does not hold: build the waiting object it belongs to
        (a variable's id is its tag; a property's or method's starts with its owner's id)."""
        if not self._deferred or nodeid.NamespaceIndex != self.ns:
            return False
        ident = nodeid.Identifier
        if not isinstance(ident, str):
            return False
        base = ident.partition("/")[0]
        owner = self._deferred_tags.get(base) or (base if base in self._deferred else None)
        if owner is None:
            return False
        self.writer.build_waiting(self._objects[owner].data)
        return True

    # -- building ------------------------------------------------------------------------------
    async def sync(self, site: SiteSpec, current: LookupValue) -> SyncResult:
        """Make the nodes match ``site``: remove what went or changed, add what is new (parents
        first), add points that appeared. Values of new variables come from ``current``."""
        site.check()
        # A build allocates hundreds of thousands of long-lived objects and no garbage cycles;
        # the cyclic collector would rescan the growing heap again and again (half the build
        # time at 10,000 meters). Paused for the build, restored after.
        paused = gc.isenabled()
        gc.disable()
        try:
            return await self._sync(site, current)
        finally:
            if paused:
                gc.enable()

    async def _sync(self, site: SiteSpec, current: LookupValue) -> SyncResult:
        slicer = Slicer()
        desired = self._desired(site)
        removed = 0
        meters_removed: list[str] = []
        for key in [k for k in self._built if k not in desired or self._built[k] != desired[k][0]]:
            if key in self._objects:
                for gone in self._subtree_keys(key):
                    if gone.startswith("meter:"):
                        meters_removed.append(gone[6:])
                removed += await self._remove_object(key)
            await slicer.pause()
        added = 0
        meters_added: list[str] = []
        now = datetime.now(UTC)
        deferred = 0
        for key, (structure, parent, full) in desired.items():
            if key not in self._objects:
                added += self._add_object(key, structure, parent)
                if key.startswith("meter:"):
                    meters_added.append(key[6:])
            if isinstance(full, (MeterSpec, RoomSpec, LinkSpec)):
                waiting = self._deferred.get(key)
                if waiting is not None:
                    deferred += self._defer_points(key, waiting, full.points, current)
                else:
                    for point in full.points:
                        if point.tag not in self._vars:
                            added += self.add_point(key, point, current(point.tag), now=now)
            await slicer.pause()
        return SyncResult(added, removed, tuple(meters_added), tuple(meters_removed), slicer.slices, deferred)

    def _defer_points(self, key: str, waiting: list[_Deferred], points: Iterable[PointSpec], current: LookupValue) -> int:
        """Add the points not yet known to what waits below ``key``, their browse names given now
        (an eager build names them before the room's meters). Returns how many."""
        n = 0
        for point in points:
            if point.tag in self._vars or point.tag in self._deferred_tags:
                continue
            waiting.append((point, self._unique_name(key, point.browse_name, point.point), current))
            self._deferred_tags[point.tag] = key
            n += 1
        return n

    def _build_children(self, key: str) -> None:
        """Build what waits below the object ``key`` (its methods, its points' variables); called
        by its node (``NodeWriter.add_object``'s ``children``), which puts the references in order."""
        waiting = self._deferred.pop(key, None)
        if waiting is None:
            return
        node = self._objects[key]
        self._add_methods(key, node, self._built[key])
        now = datetime.now(UTC)
        for point, name, current in waiting:
            del self._deferred_tags[point.tag]
            value = self._early.pop(point.tag, None)
            self._add_variable(key, node, point, name, value if value is not None else current(point.tag), now)
        self.built_late += 1

    def _desired(self, site: SiteSpec) -> dict[str, tuple[Any, str, Any]]:
        """key → (structural spec, parent key, full spec), parents before children."""
        out: dict[str, tuple[Any, str, Any]] = {"site": (("site", site.name), "", None)}
        for b in site.buildings.values():
            out[f"building:{b.id}"] = (b, "site", b)
        for f in sorted(site.floors.values(), key=lambda f: (f.building_id, f.level, f.name)):
            out[f"floor:{f.id}"] = (f, f"building:{f.building_id}", f)
        for r in site.rooms.values():
            out[f"room:{r.id}"] = (_structure(r), f"floor:{r.floor_id}", r)
        for m in site.meters.values():
            parent = f"room:{m.room_id}" if m.room_id is not None else f"building:{m.building_id}"
            out[f"meter:{m.id}"] = (_structure(m), parent, m)
        if site.links:
            out["links"] = (("links",), "site", None)
            for link in site.links.values():
                out[f"link:{link.name}"] = (_structure(link), "links", link)
        return out

    def _unique_name(self, parent_key: str, name: str, fallback: str) -> str:
        used = self._names.setdefault(parent_key, set())
        if name in used:
            name = fallback
        used.add(name)
        return name

    def _add_object(self, key: str, spec: Any, parent_key: str) -> int:
        nodeid = self.nodeid(key)
        w = self.writer
        before = w.added
        if key == "site":
            node = w.add_object(nodeid, "Site", _OBJECTS, _FOLDER, description=f"Site: {spec[1]}", notifier=True)
            w.add_notifier_reference(_SERVER, node)
        else:
            parent = self._objects[parent_key]
            kind, _, ident = key.partition(":")
            if kind == "building":
                name = self._unique_name(parent_key, spec.name, ident)
                node = w.add_object(nodeid, name, parent, _FOLDER, description=f"Building {spec.name} ({ident})", **_NOTIFIER)
            elif kind == "floor":
                name = self._unique_name(parent_key, spec.name, ident)
                node = w.add_object(nodeid, name, parent, _FOLDER, description=f"Floor {spec.name} ({ident})", **_NOTIFIER)
            elif kind == "links":
                name = self._unique_name(parent_key, "Links", key)
                node = w.add_object(nodeid, name, parent, _FOLDER, description="The poller's links (gateways, buses)", **_NOTIFIER)
            elif kind == "link":
                name = self._unique_name(parent_key, ident, ident)
                node = w.add_object(nodeid, name, parent, self.types.link, description=spec.description or f"Link {ident}")
            elif kind in ("room", "meter"):
                if kind == "room":
                    name = self._unique_name(parent_key, spec.name, ident)
                    type_id, description = self.types.room, spec.description or f"Room {spec.name} ({ident})"
                else:
                    name = self._unique_name(parent_key, ident, ident)
                    type_id = self.types.meter_type(spec.kind)
                    description = spec.description or f"{spec.kind.capitalize()} meter {ident}"
                children = functools.partial(self._build_children, key) if self.lazy else None
                node = w.add_object(nodeid, name, parent, type_id, description=description, children=children)
                self._by_nodeid[nodeid] = key
                if self.lazy:
                    self._deferred[key] = []
                else:
                    self._add_methods(key, node, spec)
            else:
                raise ValueError(f"unknown object key {key!r}")
        self._objects[key] = node
        self._built[key] = spec
        return w.added - before

    def _add_methods(self, key: str, node: ObjectNode, spec: Any) -> None:
        if key.startswith("room:"):
            self._add_method(node, "Recharge", self._recharge, RECHARGE_INPUTS, RECHARGE_OUTPUTS,
                             "Credit the room's account; returns the new balance")
        elif key.startswith("meter:") and spec.switchable:
            self._add_method(node, "SetRelay", self._set_relay, SET_RELAY_INPUTS, SET_RELAY_OUTPUTS,
                             "Close (true) or open (false) the relay or valve; returns once confirmed or failed")

    def _arg_attr(self, key: str, args: list[ua.Argument]) -> ValueAttribute:
        attr = self._arg_attrs.get(key)
        if attr is None:
            attr = ValueAttribute(ua.DataValue(ua.Variant(args, ua.VariantType.ExtensionObject, is_array=True)))
            self._arg_attrs[key] = attr
        return attr

    def _add_method(
        self, parent: ObjectNode, name: str, call: Callable[..., Any],
        inputs: list[ua.Argument], outputs: list[ua.Argument], description: str,
    ) -> None:
        base = f"{parent.nodeid.Identifier}/{name}"
        method = self.writer.add_method(self.nodeid(base), name, parent, call, description=description)
        for prop, args in (("InputArguments", inputs), ("OutputArguments", outputs)):
            self.writer.add_property(
                self.nodeid(f"{base}/{prop}"), prop, method, self._arg_attr(f"{name}/{prop}", args), _ARGUMENT,
                value_rank=1, array_dimensions=(len(args),),
            )

    def _waiting(self, derived: bool, now: datetime | None) -> ua.DataValue:
        dv = self._waiting_values.get(derived)
        if dv is None:
            dv = data_value(None, ua.VariantType.Null, derived=derived, now=now or datetime.now(UTC))
            self._waiting_values[derived] = dv
        return dv

    def _eu_attr(self, unit: str) -> ValueAttribute | None:
        attr = self._eu_attrs.get(unit)
        if attr is None:
            eu = eu_information(unit, self.namespace_uri)
            if eu is None:
                return None
            attr = ValueAttribute(ua.DataValue(ua.Variant(eu, ua.VariantType.ExtensionObject)))
            self._eu_attrs[unit] = attr
        return attr

    def add_point(self, owner_key: str, point: PointSpec, value: TagValue | None, *, now: datetime | None = None) -> int:
        """Add the variable of ``point`` under the object ``owner_key``. Returns nodes added (none
        while the object's variables wait for its first touch: then the point waits with them)."""
        parent = self._objects.get(owner_key)
        if parent is None:
            raise KeyError(f"no object {owner_key!r} to add {point.tag!r} to")
        if point.tag in self._vars or point.tag in self._deferred_tags:
            return 0
        waiting = self._deferred.get(owner_key)
        if waiting is not None:
            if value is not None:
                self._early[point.tag] = value
            self._defer_points(owner_key, waiting, (point,), _no_value)
            return 0
        return self._add_variable(owner_key, parent, point, self._unique_name(owner_key, point.browse_name, point.point), value, now)

    def _add_variable(
        self, owner_key: str, parent: ObjectNode, point: PointSpec, name: str, value: TagValue | None, now: datetime | None
    ) -> int:
        vtype = VARIANT_TYPES[point.data_type]
        analog = point.data_type in (DataType.FLOAT,)
        eu = self._eu_attr(point.unit) if analog else None
        before = self.writer.added
        if value is None:
            # not registered yet: one shared "waiting" DataValue until the first change
            initial = self._waiting(point.derived, now)
        else:
            initial = data_value(value, vtype, derived=point.derived)
        var = _Var(initial, vtype, point.derived, owner_key)
        var_node, _ = self.writer.add_variable(
            self.nodeid(point.tag), name, parent, var,
            DATA_TYPES[point.data_type],
            type_definition=_ANALOG if analog else _DATA_VARIABLE,
            description=point.description,
            history_config=self.history_configs.get(point.history) if point.history is not None else None,
        )
        if eu is not None:
            self.writer.add_property(self.nodeid(f"{point.tag}/EngineeringUnits"), "EngineeringUnits", var_node, eu, _EU_TYPE)
        self._vars[point.tag] = var
        self._owned.setdefault(owner_key, []).append(point.tag)
        return self.writer.added - before

    # -- removing ------------------------------------------------------------------------------
    def _subtree_keys(self, key: str) -> list[str]:
        node_ids = self.writer.subtree(self.nodeid(key))
        return [n.Identifier for n in node_ids if n.Identifier in self._objects]

    async def _remove_object(self, key: str) -> int:
        keys = self._subtree_keys(key)
        parent_key = self._parent_key(key)
        name = self._objects[key].browse_name.Name
        for k in keys:
            # before the removal, which awaits monitored items' last notifications: a client
            # touching one of these objects meanwhile must not build children nobody removes
            for point, _name, _current in self._deferred.pop(k, ()):
                self._deferred_tags.pop(point.tag, None)
                self._early.pop(point.tag, None)
        removed = await self.writer.remove(self.nodeid(key))
        for k in keys:
            node = self._objects.pop(k)
            self._built.pop(k, None)
            self._names.pop(k, None)
            self._by_nodeid.pop(node.nodeid, None)
            for tag in self._owned.pop(k, ()):
                self._vars.pop(tag, None)
        if parent_key is not None and parent_key in self._names:
            self._names[parent_key].discard(name)
        return removed

    def _parent_key(self, key: str) -> str | None:
        node = self.writer.aspace.get(self.nodeid(key))
        if node is None:
            return None
        for ref in self.writer.references(node):
            if not ref.IsForward and ref.ReferenceTypeId in (RefType.ORGANIZES, RefType.HAS_COMPONENT, RefType.HAS_NOTIFIER):
                ident = ref.NodeId.Identifier
                return ident if isinstance(ident, str) and ident in self._objects else None
        return None

    # -- live values ---------------------------------------------------------------------------
    async def push(self, changes: Iterable[TagChange]) -> list[TagChange]:
        """Set the values of the variables fed by ``changes``; notify monitored items. A waiting
        variable keeps the value for its build. Returns the changes of tags that have no
        variable (yet), built or waiting."""
        unknown: list[TagChange] = []
        n = 0
        early = self._early
        waiting = self._deferred_tags
        for change in changes:
            var = self._vars.get(change.name)
            if var is None:
                if change.name in waiting:
                    early[change.name] = change.new  # its variable starts from it when built
                    n += 1
                else:
                    unknown.append(change)
                continue
            dv = data_value(change.new, var.vtype, derived=var.derived)
            if dv.StatusCode is not None and dv.StatusCode.value == ua.StatusCodes.BadTypeMismatch:
                self._log_mismatch(change)
            var.value = dv
            if var.monitored:
                for handle, callback in list(var.datachange_callbacks.items()):
                    await callback(handle, dv)
            n += 1
            if n % _YIELD_EVERY == 0:
                await asyncio.sleep(0)
        self.updates += n
        return unknown

    def _log_mismatch(self, change: TagChange) -> None:
        if change.name not in self._mismatch_logged:
            self._mismatch_logged.add(change.name)
            log.warning(
                "tag value does not fit its OPC UA data type",
                extra={"tag": change.name, "value": repr(change.new.value)},
            )
