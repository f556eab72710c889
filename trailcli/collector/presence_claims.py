"""What a Bayeux handshake's `ext` or a presence identify request claims about its session: the
visit, the visitor and (from a signed user token only) the user."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from trailcli.collector import claims
from trailcli.collector.ahoy_payload import sanitize_token
from trailcli.presence.live import Binding

# the claim names binding_from reports for a refused user token, by the reason it was refused
_IGNORED_TOKEN = {
    claims.BAD_SIGNATURE: "bad_user_token",
    claims.OTHER_VISIT: "user_token_for_other_visit",
    claims.UNSCOPED: "unscoped_user_token",
}
REFUSAL_OF = {claim: reason for reason, claim in _IGNORED_TOKEN.items()}
UNSCOPED_ACCEPTED = "accepted_unscoped_user_token"  # not ignored: counted, not warned about


def binding_from(
    fields: Mapping[str, Any], secret: str | None, accept_unscoped: bool = False
) -> tuple[Binding, list[str], str | None]:
    """The binding a handshake `ext` (or an identify body) claims, the claims it ignored, and the
    user id of a `user_token` signed for the visit it names (None without one).

    Accepted: `trail.visit_token`, `trail.visitor_token`, `trail.user_token` (signed), the same
    keys at the top level, and the older `visit_id`/`visitor_id` names. A user id is taken only
    from a token signed for that visit (`claims`); an unsigned `user_id`, a badly signed token, a
    token for another visit or one in the older unscoped format (unless `accept_unscoped`) is
    ignored and named in the returned claims (`unsigned_user_id`, `bad_user_token`,
    `user_token_for_other_visit`, `unscoped_user_token`; an unscoped token accepted with
    `accept_unscoped` is named `accepted_unscoped_user_token`, to be counted).
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
    visit_token = sanitize_token(pick("visit_token", "visit_id"))
    user_token = pick("user_token")
    user_id = None
    if user_token is not None:
        check = claims.check_user_token(
            user_token, visit_token, secret, accept_unscoped=accept_unscoped
        )
        user_id = check.user_id
        if check.refused is not None:
            ignored.append(_IGNORED_TOKEN[check.refused])
        elif check.unscoped:
            ignored.append(UNSCOPED_ACCEPTED)
    if pick("user_id") is not None:
        ignored.append("unsigned_user_id")
    binding = Binding(
        visit_token=visit_token,
        visitor_token=sanitize_token(pick("visitor_token", "visitor_id")),
        user_id=user_id,
    )
    return binding, ignored, user_id
