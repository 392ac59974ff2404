"""Roles, principals and the visibility table (PL-2, RP-3, RP-4). Pure data and functions.

The serialisation layer (`ioc_core.incidents.views`) is the only reader of `VISIBILITY`;
no endpoint decides on its own what a role may see.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    PUBLIC = "public"  # no token
    CITIZEN = "citizen"  # a resident's account; owns their reports
    CALLTAKER = "calltaker"
    SUPERVISOR = "supervisor"
    AGENCY = "agency"  # bound to one agency
    LEADER = "leader"
    ADMIN = "admin"
    SERVICE = "service"  # channel adapters (Zalo, Telegram, web portal, switchboard)


STAFF: frozenset[Role] = frozenset({Role.CALLTAKER, Role.SUPERVISOR, Role.LEADER, Role.ADMIN})


@dataclass(frozen=True, kw_only=True)
class Principal:
    role: Role
    name: str = "public"
    token_id: str | None = None
    agency_code: str | None = None
    subject: str = ""  # citizen identity, e.g. "zalo:12345" or a portal account
    extension: str | None = None  # a signed-in staff member's phone extension, if any
    session: bool = False  # True: a staff sign-in (cookie), not an API token

    @property
    def is_staff(self) -> bool:
        return self.role in STAFF

    @property
    def actor(self) -> str:
        return f"{self.role.value}:{self.name}"


ANONYMOUS = Principal(role=Role.PUBLIC)
SYSTEM = Principal(role=Role.SERVICE, name="system")


class Scope(StrEnum):
    ALL = "all"  # every incident, drafts included
    PUBLIC = "public"  # every non-draft incident
    AGENCY = "agency"  # only incidents assigned to the principal's agency


@dataclass(frozen=True)
class Visibility:
    scope: Scope
    reporter_identity: bool  # name, channel user id of non-confidential reporters
    reporter_contact: bool  # phone and e-mail of non-confidential reporters
    confidential: bool  # identity and contact of confidential reporters (audited)
    internal_notes: bool
    full_timeline: bool  # actors and notes of every timeline row


_NONE = dict(
    reporter_identity=False,
    reporter_contact=False,
    confidential=False,
    internal_notes=False,
    full_timeline=False,
)
_STAFF_VIEW = Visibility(Scope.ALL, True, True, True, True, True)

VISIBILITY: dict[Role, Visibility] = {
    Role.PUBLIC: Visibility(Scope.PUBLIC, **_NONE),
    # A citizen sees others' reports like the public; their own report additionally shows
    # their own details (see views.serialise_incident).
    Role.CITIZEN: Visibility(Scope.PUBLIC, **_NONE),
    Role.AGENCY: Visibility(
        Scope.AGENCY,
        reporter_identity=True,
        reporter_contact=True,
        confidential=False,
        internal_notes=False,
        full_timeline=False,
    ),
    # Channel adapters must reach non-confidential reporters on their channel; a confidential
    # reporter is reached through the core's own notifier, never through the adapter's view.
    Role.SERVICE: Visibility(
        Scope.PUBLIC,
        reporter_identity=True,
        reporter_contact=False,
        confidential=False,
        internal_notes=False,
        full_timeline=False,
    ),
    Role.CALLTAKER: _STAFF_VIEW,
    Role.SUPERVISOR: _STAFF_VIEW,
    Role.LEADER: _STAFF_VIEW,
    Role.ADMIN: _STAFF_VIEW,
}

# Who may do what besides lifecycle transitions (those are in incidents.lifecycle).
CREATE_ROLES = frozenset({Role.CITIZEN, Role.SERVICE} | STAFF)
REPLY_ROLES = frozenset({Role.AGENCY} | STAFF)
NOTE_ROLES = STAFF
ATTACH_ROLES = frozenset({Role.CITIZEN, Role.SERVICE, Role.AGENCY} | STAFF)
UPDATE_ROLES = STAFF
MERGE_ROLES = STAFF
ESCALATE_ROLES = STAFF
# CH-4: the reporter rates the handling, themselves (citizen) or through a channel (service).
RATE_ROLES = frozenset({Role.CITIZEN, Role.SERVICE})
