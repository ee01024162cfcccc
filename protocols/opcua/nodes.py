"""Writes node data straight into asyncua's address space.

asyncua's node API adds one node per service call, checks every sibling on each add and
allocates every attribute afresh: ~6,000 nodes/s, and a flat folder is quadratic (LIMITS.md).
:class:`NodeWriter` puts nodes into the address space's dictionary itself, each a small slotted
object with asyncua's ``NodeData`` interface (``nodeid``, ``attributes``, ``references``,
``call``; it is its own ``attributes``) whose attributes are mostly shared: node class, data
type, access level and masks come from one dict per node shape, the browse names and
descriptions of points every meter has are one object each, and the references back to a
parent or to a type are shared by the siblings. Only the node id, the value and the forward
references are per node (bench/opcua: 10,000 meters, 320,000 nodes, in ~3.3 s and ~230 MB;
50,000 meters, 1.6 million nodes, in ~16 s and ~1.2 GB, on a quiet machine).

This relies on how asyncua reads nodes (``attributes`` through ``in``, ``[]`` and ``get``;
``references`` as a list; ``AttributeValue``'s fields); ``tests/protocols/opcua`` reads every
attribute of such nodes next to API-built ones, browses them with asyncua's and node-opcua's
clients, and holds the whole of a site's browse to a recorded snapshot.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from asyncua import ua
from asyncua.server.address_space import AddressSpace, AttributeValue

__all__ = ["NodeWriter", "ObjectNode", "RefType", "ValueAttribute"]

A = ua.AttributeIds
_NULL_NODE = ua.NodeId()


class RefType:
    ORGANIZES = ua.NodeId(ua.ObjectIds.Organizes)
    HAS_COMPONENT = ua.NodeId(ua.ObjectIds.HasComponent)
    HAS_PROPERTY = ua.NodeId(ua.ObjectIds.HasProperty)
    HAS_TYPE_DEFINITION = ua.NodeId(ua.ObjectIds.HasTypeDefinition)
    HAS_NOTIFIER = ua.NodeId(ua.ObjectIds.HasNotifier)
    HAS_HISTORICAL_CONFIGURATION = ua.NodeId(ua.ObjectIds.HasHistoricalConfiguration)


@dataclass(slots=True, eq=False)
class ObjectNode:
    """What a child needs to know of its parent to reference it. Treated as immutable; not a
    frozen dataclass because a build makes one per node and a frozen one's __init__ (six
    ``object.__setattr__`` calls) cost three times as much."""

    nodeid: ua.NodeId
    browse_name: ua.QualifiedName
    display_name: ua.LocalizedText
    node_class: ua.NodeClass
    type_definition: ua.NodeId
    data: Any = field(default=None, compare=False, repr=False)  # its node, when we built it


_PROPERTY_TYPE = ua.NodeId(ua.ObjectIds.PropertyType)
_REF = ua.ReferenceDescription
_NAMES_KEPT = 100_000  # shared browse names kept (a site's point names are a few dozen)
_TEXTS_KEPT = 10_000  # shared descriptions kept


def _reference(
    ref_type: ua.NodeId, forward: bool, nodeid: ua.NodeId, browse_name: ua.QualifiedName,
    display_name: ua.LocalizedText, node_class: ua.NodeClass, type_definition: ua.NodeId,
) -> ua.ReferenceDescription:
    # The same object as ua.ReferenceDescription(...) (a slotted dataclass without __post_init__),
    # its fields set directly: its generated __init__ took ~1.3 µs, this ~0.35 µs, and a build
    # makes one per node (asyncua 2.1.0; tests/protocols/opcua/test_address_space_snapshot.py).
    ref = _REF.__new__(_REF)
    ref.ReferenceTypeId = ref_type
    ref.IsForward = forward
    ref.NodeId = nodeid
    ref.BrowseName = browse_name
    ref.DisplayName = display_name
    ref.NodeClass = node_class
    ref.TypeDefinition = type_definition
    return ref


@functools.cache
def _static(value: Any, vtype: ua.VariantType) -> AttributeValue:
    # an attribute nobody writes: one AttributeValue shared by every node that has it
    if isinstance(value, tuple):
        return AttributeValue(ua.DataValue(ua.Variant(list(value), vtype, is_array=True)))
    return AttributeValue(ua.DataValue(ua.Variant(value, vtype)))


class ValueAttribute:
    """A node's Value attribute: asyncua's ``AttributeValue`` interface in 4 slots, with the
    monitored-item callbacks dict created only when a client first monitors the node."""

    __slots__ = ("value", "value_callback", "value_setter", "_callbacks")

    def __init__(self, value: ua.DataValue) -> None:
        self.value: ua.DataValue | None = value
        self.value_callback: Callable[..., Any] | None = None
        self.value_setter: Callable[..., Any] | None = None
        self._callbacks: dict[int, Callable[..., Any]] | None = None

    @property
    def datachange_callbacks(self) -> dict[int, Callable[..., Any]]:
        if self._callbacks is None:
            self._callbacks = {}
        return self._callbacks

    @property
    def monitored(self) -> bool:
        return bool(self._callbacks)


class _Node:
    """asyncua's ``NodeData`` interface (``nodeid``, ``attributes``, ``references``, ``call``) and,
    as its own ``attributes``, the attributes as asyncua reads them (``in``, ``[]``, ``get``): the
    few that differ per node in slots, the rest from a dict shared by all nodes of the same shape.
    One object a node, not two: a build allocates one per node, 1.6 million at 50,000 meters."""

    __slots__ = ("nodeid", "value", "name", "display", "description", "shape", "_nodeid_attr", "references", "call")

    def __init__(
        self, nodeid: ua.NodeId, name: AttributeValue, display: AttributeValue, description: AttributeValue,
        shape: dict[ua.AttributeIds, AttributeValue], value: ValueAttribute | AttributeValue | None = None,
    ) -> None:
        self.nodeid = nodeid
        self.value = value
        self.name = name
        self.display = display
        self.description = description
        self.shape = shape
        self._nodeid_attr: AttributeValue | None = None
        self.references: list[ua.ReferenceDescription] = []
        self.call: Callable[..., Any] | None = None

    @property
    def attributes(self) -> _Node:
        return self

    def __bool__(self) -> bool:
        return True  # a node, whatever its attribute count (asyncua tests nodes with ``if node``)

    def __getitem__(self, attr: int) -> Any:
        if attr == A.Value:
            if self.value is None:
                raise KeyError(attr)
            return self.value
        if attr == A.NodeId:
            if self._nodeid_attr is None:
                self._nodeid_attr = AttributeValue(ua.DataValue(ua.Variant(self.nodeid, ua.VariantType.NodeId)))
            return self._nodeid_attr
        if attr == A.BrowseName:
            return self.name
        if attr == A.DisplayName:
            return self.display
        if attr == A.Description:
            return self.description
        return self.shape[attr]  # type: ignore[index]

    def __setitem__(self, attr: int, value: Any) -> None:
        if attr == A.Value:
            self.value = value
        elif attr == A.NodeId:
            self._nodeid_attr = value
        elif attr == A.BrowseName:
            self.name = value
        elif attr == A.DisplayName:
            self.display = value
        elif attr == A.Description:
            self.description = value
        else:
            raise TypeError(f"attribute {attr} of {self.nodeid.to_string()} is fixed")

    def __contains__(self, attr: object) -> bool:
        if attr == A.Value:
            return self.value is not None
        return attr in (A.NodeId, A.BrowseName, A.DisplayName, A.Description) or attr in self.shape

    def get(self, attr: int, default: Any = None) -> Any:
        try:
            return self[attr]
        except KeyError:
            return default

    def keys(self) -> list[ua.AttributeIds]:
        own = [A.NodeId, A.BrowseName, A.DisplayName, A.Description]
        if self.value is not None:
            own.append(A.Value)
        return own + list(self.shape)

    def __iter__(self) -> Any:
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self.keys())

    def items(self) -> list[tuple[ua.AttributeIds, Any]]:
        return [(k, self[k]) for k in self.keys()]

    def values(self) -> list[Any]:
        return [self[k] for k in self.keys()]

    def __repr__(self) -> str:
        return f"NodeData(id:{self.nodeid.to_string()})"


_REFS = _Node.__dict__["references"]  # the slot itself, past _PendingNode's property


def _refs_of(data: Any) -> list[ua.ReferenceDescription]:
    """A node's references as they are: a waiting object's children are not built for it."""
    return _REFS.__get__(data, _Node) if isinstance(data, _Node) else data.references  # type: ignore[no-any-return]


class _PendingNode(_Node):
    """An object whose children wait: they are built (by ``children``) the first time anything
    reads its ``references`` (a browse, a path translation, a client touching one of them,
    through :class:`_ResolvingNodes`). The children's references go where an eager build puts
    them: after the object's own (parent, type) and before anything added to it since (a room's
    meters), so that a browse sees the same order either way."""

    __slots__ = ("children", "_mark")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.children: Callable[[], None] | None = None
        self._mark = 0

    @property  # type: ignore[override]
    def references(self) -> list[ua.ReferenceDescription]:
        self.build()
        return _REFS.__get__(self, _Node)  # type: ignore[no-any-return]

    def build(self) -> None:
        """Build the children now, if they still wait."""
        build = self.children
        if build is None:
            return
        self.children = None
        refs: list[ua.ReferenceDescription] = _REFS.__get__(self, _Node)
        tail = refs[self._mark:]
        del refs[self._mark:]
        try:
            build()
        finally:
            refs.extend(tail)

    @references.setter
    def references(self, value: list[ua.ReferenceDescription]) -> None:
        _REFS.__set__(self, value)


_MISSING = object()


class _ResolvingNodes(dict):  # type: ignore[type-arg]
    """The address space's dictionary, asking ``resolve`` about a node id it does not hold
    (``[]``, ``get``, ``in``: every way asyncua looks a node up) before saying it is not there:
    ``resolve`` builds the waiting object the id belongs to and says whether it did."""

    __slots__ = ("resolve",)

    def __init__(self, nodes: dict[ua.NodeId, Any], resolve: Callable[[ua.NodeId], bool]) -> None:
        super().__init__(nodes)
        self.resolve = resolve

    def __missing__(self, nodeid: ua.NodeId) -> Any:
        if self.resolve(nodeid):
            return dict.__getitem__(self, nodeid)
        raise KeyError(nodeid)

    def get(self, nodeid: ua.NodeId, default: Any = None) -> Any:
        node = dict.get(self, nodeid, _MISSING)
        if node is _MISSING:
            return dict.get(self, nodeid, default) if self.resolve(nodeid) else default
        return node

    def __contains__(self, nodeid: object) -> bool:
        if dict.__contains__(self, nodeid):
            return True
        return isinstance(nodeid, ua.NodeId) and self.resolve(nodeid) and dict.__contains__(self, nodeid)


@functools.cache
def _shape(node_class: ua.NodeClass, extra: tuple[tuple[ua.AttributeIds, AttributeValue], ...]) -> dict[ua.AttributeIds, AttributeValue]:
    shape = {
        A.NodeClass: _static(node_class, ua.VariantType.Int32),
        A.WriteMask: _static(0, ua.VariantType.UInt32),
        A.UserWriteMask: _static(0, ua.VariantType.UInt32),
    }
    shape.update(extra)
    return shape


def _object_shape(notifier: bool = False) -> dict[ua.AttributeIds, AttributeValue]:
    events = ua.EventNotifier.SubscribeToEvents.mask if notifier else 0
    return _shape(ua.NodeClass.Object, ((A.EventNotifier, _static(events, ua.VariantType.Byte)),))


def _method_shape() -> dict[ua.AttributeIds, AttributeValue]:
    return _shape(ua.NodeClass.Method, (
        (A.Executable, _static(True, ua.VariantType.Boolean)),
        (A.UserExecutable, _static(True, ua.VariantType.Boolean)),
    ))


@functools.cache
def _variable_shape(
    data_type: ua.NodeId, value_rank: int, array_dimensions: tuple[int, ...] | None, historizing: bool = False
) -> dict[ua.AttributeIds, AttributeValue]:
    read = ua.AccessLevel.CurrentRead.mask
    if historizing:
        read |= ua.AccessLevel.HistoryRead.mask
    extra = [
        (A.DataType, _static(data_type, ua.VariantType.NodeId)),
        (A.ValueRank, _static(value_rank, ua.VariantType.Int32)),
        (A.AccessLevel, _static(read, ua.VariantType.Byte)),
        (A.UserAccessLevel, _static(read, ua.VariantType.Byte)),
        (A.MinimumSamplingInterval, _static(0.0, ua.VariantType.Double)),
        (A.Historizing, _static(historizing, ua.VariantType.Boolean)),
    ]
    if array_dimensions is not None:
        extra.append((A.ArrayDimensions, _static(array_dimensions, ua.VariantType.UInt32)))
    return _shape(ua.NodeClass.Variable, tuple(extra))


class NodeWriter:
    def __init__(self, aspace: AddressSpace) -> None:
        self.aspace = aspace
        self._nodes = aspace._nodes  # the dict behind the address space
        self._names: dict[tuple[int, str], tuple[AttributeValue, AttributeValue, ua.QualifiedName, ua.LocalizedText]] = {}
        self._texts: dict[str, AttributeValue] = {}
        # Keyed by the parent's node data (identity) and by (identifier, namespace) tuples rather
        # than by NodeId, whose __hash__ runs in Python: a build looked up ~5 NodeId hashes a node.
        self._back_refs: dict[Any, dict[ua.NodeId, ua.ReferenceDescription]] = {}
        self._type_refs: dict[tuple[Any, int], ua.ReferenceDescription] = {}
        self._config_refs: dict[tuple[Any, int], ua.ReferenceDescription] = {}
        self._shapes: dict[tuple[Any, ...], dict[ua.AttributeIds, AttributeValue]] = {}
        self.added = 0

    def resolve_missing(self, resolve: Callable[[ua.NodeId], bool]) -> None:
        """Have the address space ask ``resolve`` for a node id it does not hold before it says
        the node is not there: ``resolve`` builds the waiting object (``add_object``'s
        ``children``) the id belongs to and returns whether it did."""
        nodes = self.aspace._nodes
        if isinstance(nodes, _ResolvingNodes):
            nodes.resolve = resolve
        else:
            nodes = _ResolvingNodes(nodes, resolve)
            self.aspace._nodes = nodes
        self._nodes = nodes

    @staticmethod
    def references(node: Any) -> list[ua.ReferenceDescription]:
        """``node``'s references as they are now (a waiting object's children are not built)."""
        return _refs_of(node)

    @staticmethod
    def build_waiting(node: Any) -> None:
        """Build the children of ``node`` if it is an object whose children wait."""
        if isinstance(node, _PendingNode):
            node.build()

    # -- shared pieces -----------------------------------------------------------------------
    def _name(self, ns: int, name: str, keep: bool = True) -> tuple[AttributeValue, AttributeValue, ua.QualifiedName, ua.LocalizedText]:
        key = (ns, name)
        entry = self._names.get(key) if keep else None
        if entry is None:
            qn = ua.QualifiedName(name, ns)
            lt = ua.LocalizedText(name)
            entry = (
                AttributeValue(ua.DataValue(ua.Variant(qn, ua.VariantType.QualifiedName))),
                AttributeValue(ua.DataValue(ua.Variant(lt, ua.VariantType.LocalizedText))),
                qn,
                lt,
            )
            if keep and len(self._names) < _NAMES_KEPT:
                self._names[key] = entry
        return entry

    def _text(self, text: str, keep: bool = True) -> AttributeValue:
        entry = self._texts.get(text) if keep else None
        if entry is None:
            entry = AttributeValue(ua.DataValue(ua.Variant(ua.LocalizedText(text), ua.VariantType.LocalizedText)))
            if keep and len(self._texts) < _TEXTS_KEPT:
                self._texts[text] = entry
        return entry

    def _variable_shape(
        self, data_type: ua.NodeId, value_rank: int, array_dimensions: tuple[int, ...] | None, historizing: bool
    ) -> dict[ua.AttributeIds, AttributeValue]:
        key = (data_type.Identifier, data_type.NamespaceIndex, value_rank, array_dimensions, historizing)
        shape = self._shapes.get(key)
        if shape is None:
            shape = self._shapes[key] = _variable_shape(data_type, value_rank, array_dimensions, historizing)
        return shape

    def _type_ref(self, type_id: ua.NodeId) -> ua.ReferenceDescription:
        key = (type_id.Identifier, type_id.NamespaceIndex)
        ref = self._type_refs.get(key)
        if ref is None:
            tnode = self.aspace[type_id]
            ref = ua.ReferenceDescription(
                ReferenceTypeId=RefType.HAS_TYPE_DEFINITION,
                IsForward=True,
                NodeId=type_id,
                BrowseName=tnode.attributes[A.BrowseName].value.Value.Value,  # type: ignore[union-attr]
                DisplayName=tnode.attributes[A.DisplayName].value.Value.Value,  # type: ignore[union-attr]
                NodeClass=tnode.attributes[A.NodeClass].value.Value.Value,  # type: ignore[union-attr]
                TypeDefinition=_NULL_NODE,
            )
            self._type_refs[key] = ref
        return ref

    def _config_ref(self, config: ua.NodeId) -> ua.ReferenceDescription:
        # one HasHistoricalConfiguration reference, shared by every variable of one history kind
        key = (config.Identifier, config.NamespaceIndex)
        ref = self._config_refs.get(key)
        if ref is None:
            cnode = self.aspace[config]
            ref = ua.ReferenceDescription(
                ReferenceTypeId=RefType.HAS_HISTORICAL_CONFIGURATION,
                IsForward=True,
                NodeId=config,
                BrowseName=cnode.attributes[A.BrowseName].value.Value.Value,  # type: ignore[union-attr]
                DisplayName=cnode.attributes[A.DisplayName].value.Value.Value,  # type: ignore[union-attr]
                NodeClass=ua.NodeClass.Object,
                TypeDefinition=ua.NodeId(ua.ObjectIds.HistoricalDataConfigurationType),
            )
            self._config_refs[key] = ref
        return ref

    def add_notifier_reference(self, parent: ObjectNode, child: ObjectNode) -> None:
        """``parent`` HasNotifier ``child`` (both ways): the event notifier hierarchy."""
        parent_data = parent.data if parent.data is not None else self.aspace.get(parent.nodeid)
        child_data = child.data if child.data is not None else self.aspace.get(child.nodeid)
        if parent_data is None or child_data is None:
            raise ValueError(f"no node {parent.nodeid.to_string()} or {child.nodeid.to_string()}")
        _refs_of(parent_data).append(
            ua.ReferenceDescription(
                ReferenceTypeId=RefType.HAS_NOTIFIER, IsForward=True, NodeId=child.nodeid, BrowseName=child.browse_name,
                DisplayName=child.display_name, NodeClass=child.node_class, TypeDefinition=child.type_definition,
            )
        )
        _refs_of(child_data).append(
            ua.ReferenceDescription(
                ReferenceTypeId=RefType.HAS_NOTIFIER, IsForward=False, NodeId=parent.nodeid, BrowseName=parent.browse_name,
                DisplayName=parent.display_name, NodeClass=parent.node_class, TypeDefinition=parent.type_definition,
            )
        )

    def _back_ref(self, parent: ObjectNode, parent_data: Any, ref_type: ua.NodeId) -> ua.ReferenceDescription:
        # shared by the children of an object; a variable's or method's one or two properties
        # are not worth a cache entry
        if parent.node_class == ua.NodeClass.Object:
            refs = self._back_refs.get(parent_data)
            if refs is None:
                refs = self._back_refs[parent_data] = {}
            ref = refs.get(ref_type)
            if ref is not None:
                return ref
        else:
            refs = {}
        ref = _reference(
            ref_type, False, parent.nodeid, parent.browse_name, parent.display_name, parent.node_class, parent.type_definition
        )
        refs[ref_type] = ref
        return ref

    # -- adding ------------------------------------------------------------------------------
    def _new(
        self,
        nodeid: ua.NodeId,
        node_class: ua.NodeClass,
        name: str,
        description: str,
        parent: ObjectNode,
        ref_type: ua.NodeId,
        type_definition: ua.NodeId | None,
        shape: dict[ua.AttributeIds, AttributeValue],
        value: ValueAttribute | AttributeValue | None = None,
        name_ns: int | None = None,
        keep: bool = True,
        children: Callable[[], None] | None = None,
    ) -> tuple[_Node, ua.QualifiedName, ua.LocalizedText]:
        # keep: the name and description are worth sharing (points, methods, properties: the
        # same few on every meter), not an object's own (its id in them): had objects' texts
        # filled the bounded caches first, every point after them got texts of its own
        parent_data = parent.data if parent.data is not None else self.aspace.get(parent.nodeid)
        if parent_data is None:
            raise ValueError(f"parent {parent.nodeid.to_string()} of {nodeid.to_string()} does not exist")
        bn_attr, dn_attr, qn, lt = self._name(nodeid.NamespaceIndex if name_ns is None else name_ns, name, keep)
        text = self._text(description or name, keep)
        node = _Node(nodeid, bn_attr, dn_attr, text, shape, value) if children is None else _PendingNode(nodeid, bn_attr, dn_attr, text, shape, value)
        if self._nodes.setdefault(nodeid, node) is not node:  # one hash: NodeId's is computed in Python
            raise ValueError(f"node {nodeid.to_string()} exists already")
        refs: list[ua.ReferenceDescription] = _REFS.__get__(node, _Node)
        refs.append(self._back_ref(parent, parent_data, ref_type))
        if type_definition is not None:
            refs.append(self._type_ref(type_definition))
        if children is not None:
            assert isinstance(node, _PendingNode)
            node._mark = len(refs)
            node.children = children
        _refs_of(parent_data).append(
            _reference(ref_type, True, nodeid, qn, lt, node_class, type_definition if type_definition is not None else _NULL_NODE)
        )
        self.added += 1
        return node, qn, lt

    def add_object(
        self,
        nodeid: ua.NodeId,
        name: str,
        parent: ObjectNode,
        type_definition: ua.NodeId,
        *,
        description: str = "",
        ref_type: ua.NodeId = RefType.ORGANIZES,
        notifier: bool = False,
        children: Callable[[], None] | None = None,
    ) -> ObjectNode:
        """An object; ``notifier``: clients may subscribe to events at it (EventNotifier).

        With ``children``, what hangs below the object waits: ``children()`` adds it the first
        time anything reads the object's references, or looks up a node id that the resolver
        (:meth:`resolve_missing`) says belongs to it."""
        node, qn, lt = self._new(
            nodeid, ua.NodeClass.Object, name, description, parent, ref_type, type_definition, _object_shape(notifier),
            keep=False, children=children,
        )
        return ObjectNode(nodeid, qn, lt, ua.NodeClass.Object, type_definition, node)

    def add_variable(
        self,
        nodeid: ua.NodeId,
        name: str,
        parent: ObjectNode,
        value: ua.DataValue | ValueAttribute,
        data_type: ua.NodeId,
        *,
        type_definition: ua.NodeId,
        description: str = "",
        ref_type: ua.NodeId = RefType.HAS_COMPONENT,
        value_rank: int = -1,
        array_dimensions: tuple[int, ...] | None = None,
        name_ns: int | None = None,
        history_config: ua.NodeId | None = None,
    ) -> tuple[ObjectNode, ValueAttribute]:
        """A read-only variable; returns it (as a parent for properties) and its Value attribute.

        Pass a :class:`ValueAttribute` as ``value`` to share one constant value between many
        nodes (the EngineeringUnits of every kWh variable). ``history_config``: the variable is
        historized (Historizing, the HistoryRead access bit) and references this
        HistoricalDataConfiguration."""
        value_attr = value if isinstance(value, ValueAttribute) else ValueAttribute(value)
        node, qn, lt = self._new(
            nodeid, ua.NodeClass.Variable, name, description, parent, ref_type, type_definition,
            self._variable_shape(data_type, value_rank, array_dimensions, history_config is not None), value_attr, name_ns,
        )
        if history_config is not None:
            node.references.append(self._config_ref(history_config))
        return ObjectNode(nodeid, qn, lt, ua.NodeClass.Variable, type_definition, node), value_attr

    def add_property(
        self,
        nodeid: ua.NodeId,
        name: str,
        parent: ObjectNode,
        value: ua.DataValue | ValueAttribute,
        data_type: ua.NodeId,
        *,
        value_rank: int = -1,
        array_dimensions: tuple[int, ...] | None = None,
    ) -> None:
        """A property (``HasProperty``, ``PropertyType``) with a standard browse name (namespace 0:
        ``EngineeringUnits``, ``InputArguments``…)."""
        self.add_variable(
            nodeid, name, parent, value, data_type,
            type_definition=_PROPERTY_TYPE, ref_type=RefType.HAS_PROPERTY,
            value_rank=value_rank, array_dimensions=array_dimensions, name_ns=0,
        )

    def add_method(
        self,
        nodeid: ua.NodeId,
        name: str,
        parent: ObjectNode,
        call: Callable[..., Any],
        *,
        description: str = "",
    ) -> ObjectNode:
        node, qn, lt = self._new(
            nodeid, ua.NodeClass.Method, name, description, parent, RefType.HAS_COMPONENT, None, _method_shape()
        )
        node.call = call
        return ObjectNode(nodeid, qn, lt, ua.NodeClass.Method, _NULL_NODE, node)

    # -- removing ----------------------------------------------------------------------------
    def children(self, nodeid: ua.NodeId) -> list[ua.NodeId]:
        node = self.aspace.get(nodeid)
        if node is None:
            return []
        return [
            r.NodeId
            for r in _refs_of(node)
            if r.IsForward and r.ReferenceTypeId in (RefType.ORGANIZES, RefType.HAS_COMPONENT, RefType.HAS_PROPERTY, RefType.HAS_NOTIFIER)
        ]

    def subtree(self, nodeid: ua.NodeId) -> list[ua.NodeId]:
        """The node and everything below it, parents before children."""
        out: list[ua.NodeId] = []
        stack = [nodeid]
        while stack:
            current = stack.pop()
            if current in self.aspace:
                out.append(current)
                stack.extend(self.children(current))
        return out

    async def remove(self, nodeid: ua.NodeId) -> int:
        """Remove a node and everything below it. Returns the number of nodes removed.

        Monitored items on removed values get a last notification with ``Bad_NodeIdUnknown``
        and are detached, so that deleting them later (or their subscription) finds nothing."""
        node = self.aspace.get(nodeid)
        if node is None:
            return 0
        doomed = self.subtree(nodeid)
        gone = ua.DataValue(StatusCode=ua.StatusCode(ua.StatusCodes.BadNodeIdUnknown))
        for nid in doomed:
            value = self.aspace[nid].attributes.get(A.Value)
            if isinstance(value, ValueAttribute) and value.monitored:
                for handle, callback in list(value.datachange_callbacks.items()):
                    await callback(handle, gone)
        doomed_set = set(doomed)
        handles = self.aspace._handle_to_attribute_map
        for handle in [h for h, (nid, _attr) in handles.items() if nid in doomed_set]:
            self.aspace.delete_datachange_callback(handle)
        parents = [r.NodeId for r in _refs_of(node) if not r.IsForward and r.ReferenceTypeId != RefType.HAS_TYPE_DEFINITION]
        for pid in parents:
            parent = self.aspace.get(pid)
            if parent is not None:
                refs = _refs_of(parent)
                refs[:] = [r for r in refs if not (r.IsForward and r.NodeId == nodeid)]
        for nid in doomed:
            self._back_refs.pop(self.aspace[nid], None)
            del self.aspace[nid]
        return len(doomed)
