"""Who is asking, from which site, for what purpose: bound to every request."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field


@dataclass(frozen=True)
class RequestContext:
    """The request context every store call carries.

    ``who`` is a user or system identity (a practitioner reference, an HL7 sender,
    ``system:loader``); ``site`` the GHT site the request acts for; ``purpose`` a
    purpose-of-use code (v3 ActReason: TREAT, HOPERAT, ETREAT for break-the-glass).
    """

    who: str
    site: str | None = None
    purpose: str = "TREAT"
    roles: frozenset[str] = frozenset()
    # From the access token (security.tokens): every site the caller may act for, the
    # SMART scopes granted (security.scopes), the organisation, the token's issuer.
    sites: frozenset[str] = frozenset()
    scopes: frozenset[str] = frozenset()
    organisation: str | None = None
    issuer: str | None = None
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)

    @classmethod
    def system(cls, name: str) -> RequestContext:
        """A context for the hub's own jobs (loader, demo, migrations)."""
        return cls(who=f"system:{name}", purpose="HOPERAT", roles=frozenset({"system"}))

    @classmethod
    def anonymous(cls) -> RequestContext:
        return cls(who="anonymous")
