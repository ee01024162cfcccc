"""Who is calling: session admission, the caller of a method, and requests we refuse.

asyncua's user manager is synchronous and its method callbacks are not told who calls them.
:class:`GatedProcessor` (one per connection) closes both gaps at the message level:

- an ActivateSession with a user name is authenticated *before* asyncua sees it, by the injected
  asynchronous ``authenticate`` (scrypt runs off the event loop); asyncua's synchronous
  ``get_user`` then only looks the verdict up. A password sent in clear over a channel that is
  not encrypted is refused.
- a Call or a HistoryRead runs with :data:`CALLER` set to the session's :class:`Caller`, so
  method handlers and the history source know the user;
- Write, node management and history updates are refused with ``Bad_UserAccessDenied`` for every
  client session (nothing here is writable through them) and reported to ``on_refused``.

asyncua's own permission ruleset only runs on secured channels; this runs on every channel.
"""

from __future__ import annotations

import contextvars
import hashlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from asyncua import ua
from asyncua.common.utils import ServiceError
from asyncua.crypto.permission_rules import (
    USER_TYPES,
    PermissionRuleset,
    User,
    UserRole,
)
from asyncua.server.internal_server import InternalServer
from asyncua.server.uaprocessor import UaProcessor
from asyncua.ua.ua_binary import nodeid_from_binary, struct_from_binary

__all__ = [
    "CALLER",
    "CHANNEL_SECURE",
    "SESSION_ID",
    "Caller",
    "Gate",
    "GatedProcessor",
    "SessionUser",
    "UserRuleset",
]

log = logging.getLogger(__name__)

Authenticate = Callable[[str, str, str], Awaitable[Any | None]]


@dataclass(frozen=True, slots=True)
class Caller:
    """The user behind a request. ``principal`` is what ``authenticate`` returned (None when
    anonymous); ``peer`` the client's address; ``mode`` the channel's security mode."""

    principal: Any | None
    name: str
    peer: str
    mode: str

    @property
    def anonymous(self) -> bool:
        return self.principal is None


CALLER: contextvars.ContextVar[Caller | None] = contextvars.ContextVar("opcua_caller", default=None)
# the session of the Call being processed (ConditionRefresh may only name its own subscriptions)
SESSION_ID: contextvars.ContextVar[ua.NodeId | None] = contextvars.ContextVar("opcua_session_id", default=None)
# whether the channel of the CreateSession being processed is signed (the client certificate
# matters then; on a channel without security it is not used and not checked)
CHANNEL_SECURE: contextvars.ContextVar[bool] = contextvars.ContextVar("opcua_channel_secure", default=False)


@dataclass
class SessionUser(User):
    principal: Any = None


def _id(code: int) -> ua.NodeId:
    return ua.NodeId(code)


_O = ua.ObjectIds
_ACTIVATE = _id(_O.ActivateSessionRequest_Encoding_DefaultBinary)
_CREATE = _id(_O.CreateSessionRequest_Encoding_DefaultBinary)
_CALL = _id(_O.CallRequest_Encoding_DefaultBinary)
_HISTORY_READ = _id(_O.HistoryReadRequest_Encoding_DefaultBinary)
_REFUSED: dict[ua.NodeId, str] = {
    _id(_O.WriteRequest_Encoding_DefaultBinary): "Write",
    _id(_O.AddNodesRequest_Encoding_DefaultBinary): "AddNodes",
    _id(_O.DeleteNodesRequest_Encoding_DefaultBinary): "DeleteNodes",
    _id(_O.AddReferencesRequest_Encoding_DefaultBinary): "AddReferences",
    _id(_O.DeleteReferencesRequest_Encoding_DefaultBinary): "DeleteReferences",
    _id(_O.HistoryUpdateRequest_Encoding_DefaultBinary): "HistoryUpdate",
    _id(_O.RegisterServerRequest_Encoding_DefaultBinary): "RegisterServer",
    _id(_O.RegisterServer2Request_Encoding_DefaultBinary): "RegisterServer2",
}


class UserRuleset(PermissionRuleset):
    """Signed channels: every session (user or anonymous, when anonymous is allowed at all) may
    use the ordinary services; asyncua's admin services (node management) nobody may."""

    def __init__(self) -> None:
        self._allowed = frozenset(map(ua.NodeId, USER_TYPES))

    def check_validity(self, user: User, action_type_id: ua.NodeId, body: Any) -> bool:
        return action_type_id in self._allowed


class Gate:
    """Session admission (asyncua's user manager) fed by the asynchronous authenticator."""

    def __init__(
        self,
        authenticate: Authenticate,
        on_refused: Callable[[Caller, str], Awaitable[None]],
        *,
        allow_anonymous: bool,
    ) -> None:
        self._authenticate = authenticate
        self.on_refused = on_refused
        self.allow_anonymous = allow_anonymous
        self._verdicts: dict[tuple[str, str], Any | None] = {}

    @staticmethod
    def _key(username: str, password: str) -> tuple[str, str]:
        return username, hashlib.sha256(password.encode()).hexdigest()

    async def verify(self, username: str, password: str, peer: str) -> tuple[str, str]:
        principal = await self._authenticate(username, password, peer)
        key = self._key(username, password)
        self._verdicts[key] = principal
        return key

    def forget(self, key: tuple[str, str]) -> None:
        self._verdicts.pop(key, None)

    # asyncua's UserManager interface
    def get_user(
        self, iserver: InternalServer, username: str | None = None, password: str | None = None, certificate: Any = None
    ) -> User | None:
        if username is None:
            # anonymous (or an X.509 identity, which we do not offer)
            return SessionUser(role=UserRole.Anonymous, name=None) if self.allow_anonymous else None
        principal = self._verdicts.get(self._key(username, password or ""))
        if principal is None:
            return None
        return SessionUser(role=UserRole.User, name=username, principal=principal)


def _peer(name: Any) -> str:
    if isinstance(name, tuple) and len(name) >= 2:
        return f"{name[0]}:{name[1]}"
    return str(name)


class GatedProcessor(UaProcessor):
    def __init__(self, internal_server: InternalServer, transport: Any, limits: Any, gate: Gate) -> None:
        super().__init__(internal_server, transport, limits)
        self.gate = gate

    def _mode(self) -> ua.MessageSecurityMode:
        return self._connection.security_policy.Mode  # type: ignore[no-any-return]

    def caller(self) -> Caller:
        user = self.session.user if self.session is not None else None
        principal = getattr(user, "principal", None)
        name = user.name if user is not None and user.name and principal is not None else "anonymous"
        return Caller(principal, name, _peer(self.name), self._mode().name.rstrip("_"))

    def _fault(self, requesthdr: ua.RequestHeader, seqhdr: Any, code: int) -> bool:
        response = ua.ServiceFault()
        response.ResponseHeader.ServiceResult = ua.StatusCode(code)
        self.send_response(requesthdr.RequestHandle, seqhdr, response)
        return True

    async def process_message(self, seqhdr: Any, body: Any) -> Any:
        peek = body.copy()
        try:
            typeid = nodeid_from_binary(peek)
            requesthdr = struct_from_binary(ua.RequestHeader, peek)
        except Exception:
            return await super().process_message(seqhdr, body)  # let asyncua report it
        if typeid == _ACTIVATE:
            return await self._activate(seqhdr, body, peek, requesthdr)
        if typeid in (_CALL, _HISTORY_READ):
            token = CALLER.set(self.caller())
            session = SESSION_ID.set(self.session.session_id if self.session is not None else None)
            try:
                return await super().process_message(seqhdr, body)
            finally:
                SESSION_ID.reset(session)
                CALLER.reset(token)
        refused = _REFUSED.get(typeid)
        if refused is not None and self.session is not None:
            caller = self.caller()
            log.warning("OPC UA request refused", extra={"service": refused, "user": caller.name, "peer": caller.peer})
            try:
                await self.gate.on_refused(caller, refused)
            finally:
                self._fault(requesthdr, seqhdr, ua.StatusCodes.BadUserAccessDenied)
            return True
        if typeid == _CREATE:
            secure = CHANNEL_SECURE.set(self._mode() != ua.MessageSecurityMode.None_)
            try:
                return await super().process_message(seqhdr, body)
            finally:
                CHANNEL_SECURE.reset(secure)
        return await super().process_message(seqhdr, body)

    async def _activate(self, seqhdr: Any, body: Any, peek: Any, requesthdr: ua.RequestHeader) -> Any:
        try:
            params = struct_from_binary(ua.ActivateSessionParameters, peek)
        except Exception:
            return await super().process_message(seqhdr, body)
        token = params.UserIdentityToken
        if not isinstance(token, ua.UserNameIdentityToken):
            return await super().process_message(seqhdr, body)
        session = self.session or self.iserver.lookup_external_session(requesthdr.AuthenticationToken)
        if session is None or session.nonce is None:
            return await super().process_message(seqhdr, body)  # asyncua answers BadSessionIdInvalid
        if not token.EncryptionAlgorithm and self._mode() != ua.MessageSecurityMode.SignAndEncrypt:
            log.warning("OPC UA login refused: password sent in clear", extra={"peer": _peer(self.name)})
            return self._fault(requesthdr, seqhdr, ua.StatusCodes.BadIdentityTokenInvalid)
        try:
            username, password = self.iserver.decrypt_user_token(session, token)
        except (ServiceError, ValueError, UnicodeDecodeError, TypeError):
            return self._fault(requesthdr, seqhdr, ua.StatusCodes.BadIdentityTokenInvalid)
        except Exception:
            log.exception("cannot decrypt an OPC UA identity token", extra={"peer": _peer(self.name)})
            return self._fault(requesthdr, seqhdr, ua.StatusCodes.BadIdentityTokenInvalid)
        key = await self.gate.verify(username or "", password or "", _peer(self.name))
        try:
            return await super().process_message(seqhdr, body)
        finally:
            self.gate.forget(key)
