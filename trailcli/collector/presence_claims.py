"""What a Bayeux handshake's `ext` or a presence identify request claims about its session: the
visit, the visitor and (from a signed user token only) the user."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from trailcli.collector import identity
from trailcli.collector.ahoy_payload import sanitize_token
from trailcli.presence.live import Binding


def binding_from(
    fields: Mapping[str, Any], secret: str | None
) -> tuple[Binding, list[str], str | None]:
    """The binding a handshake `ext` (or an identify body) claims, the claims it ignored, and the
    user id of a correctly signed `user_token` (None without one).

    Accepted: `trail.visit_token`, `trail.visitor_token`, `trail.user_token` (signed), the same
    keys at the top level, and the older `visit_id`/`visitor_id` names. A user id is taken only
    from a signed token; an unsigned `user_id` or a badly signed token is ignored and named in the
    returned claims (`unsigned_user_id`, `bad_user_token`).
    """
    trail = fields.get("trail")
    nested: Mapping[str, Any] = trail if isinstance(trail, Mapping) else {}

    def pick(*names: str) -> Any:
        for source in (nested, fields):
            for name in names:
                if source.get(name) not in (None, ""):
                    return source.get(name)
        return None

    ignored: list[str] = []
    user_token = pick("user_token")
    user_id = identity.verify_user_token(user_token, secret) if user_token is not None else None
    if user_token is not None and user_id is None:
        ignored.append("bad_user_token")
    if pick("user_id") is not None:
        ignored.append("unsigned_user_id")
    binding = Binding(
        visit_token=sanitize_token(pick("visit_token", "visit_id")),
        visitor_token=sanitize_token(pick("visitor_token", "visitor_id")),
        user_id=user_id,
    )
    return binding, ignored, user_id
