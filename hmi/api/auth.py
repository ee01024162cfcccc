"""``POST /api/v1/auth/token``: exchange a user name and password for an API token."""

from __future__ import annotations

import math
from datetime import timedelta

from pydantic import BaseModel, ConfigDict, Field

from scada.users.component import USERS

from ..keys import CONTEXT, LOGIN_LIMITER
from .router import AUDIT_ACTOR, ApiCall, ApiError, ApiRouter

__all__ = ["router"]

router = ApiRouter("auth")


class TokenIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)
    ttl_hours: float = Field(default=12, gt=0, le=24 * 90)


@router.post("/auth/token", body=TokenIn, permission=None, summary="Issue an API token for a user")
async def issue_token(call: ApiCall[TokenIn]) -> dict[str, object]:
    request = call.request
    limiter = request.app[LOGIN_LIMITER]
    address = request.remote or "?"
    # counted before the password is checked: parallel attempts cannot pass the limit meanwhile
    with limiter.attempt(address, call.body.user) as attempt:
        if attempt.refused:
            wait = math.ceil(attempt.wait)
            raise ApiError(429, f"too many failed logins: retry in {wait} s", retry_after_s=wait)
        users = request.app[CONTEXT][USERS]
        user = await users.authenticate(call.body.user, call.body.password)
        if user is None:
            raise ApiError(401, "unknown user or wrong password")  # counted, not audited (scada.users.logins)
        attempt.succeeded()
    request[AUDIT_ACTOR] = user.actor("api")
    token = await users.issue_token(user, "api", ttl=timedelta(hours=call.body.ttl_hours))
    return {"token": token, "user": user.name, "role": user.role.value, "expires_in_s": int(call.body.ttl_hours * 3600)}
