"""Event names and payload schemas (versioned). `<aggregate>.<past_tense>`.

Payloads never carry a reporter's identity or contact: consumers that must reach a
reporter ask the core through `ioc_core.api`, which applies the role rules.
"""

from __future__ import annotations

from typing import Final

INCIDENT_CREATED: Final = "incident.created"
INCIDENT_STATE_CHANGED: Final = "incident.state_changed"
INCIDENT_MERGED: Final = "incident.merged"
INCIDENT_UNMERGED: Final = "incident.unmerged"
INCIDENT_REPLY_ADDED: Final = "incident.reply_added"
INCIDENT_NOTE_ADDED: Final = "incident.note_added"
INCIDENT_ATTACHMENT_ADDED: Final = "incident.attachment_added"
INCIDENT_UPDATED: Final = "incident.updated"
INCIDENT_ESCALATED: Final = "incident.escalated"
INCIDENT_RATED: Final = "incident.rated"

# Switchboard facts (telephony). No caller number in payloads: consumers ask the API.
CALL_ARRIVED: Final = "call.arrived"
CALL_QUEUED: Final = "call.queued"
CALL_ANSWERED: Final = "call.answered"
CALL_ABANDONED: Final = "call.abandoned"
CALL_ENDED: Final = "call.ended"
CALLBACK_CREATED: Final = "callback.created"
CALLBACK_UPDATED: Final = "callback.updated"
AGENT_STATE_CHANGED: Final = "agent.state_changed"
CALL_TRANSCRIPT_FINAL: Final = "call.transcript.final"
CALL_TRANSCRIPT_PARTIAL: Final = "call.transcript.partial"
# A citizen's chat handed to a person (CH-7): the work item's facts, never the name or text.
CHAT_HANDOFF_OPENED: Final = "chat.handoff_opened"
CHAT_HANDOFF_UPDATED: Final = "chat.handoff_updated"
_HANDOFF_KEYS: Final = frozenset({"handoff_id", "channel", "status", "urgent", "agent"})
_CALL_KEYS: Final = frozenset({"call_id", "service", "direction", "status", "queue", "agent"})

# name -> (version, keys every payload has). Tests check the services against this table.
SCHEMAS: Final[dict[str, tuple[int, frozenset[str]]]] = {
    INCIDENT_CREATED: (
        1,
        frozenset(
            {
                "incident_id",
                "code",
                "category",
                "channel",
                "state",
                "priority",
                "track",
                "area_code",
                "lat",
                "lon",
            }
        ),
    ),
    INCIDENT_STATE_CHANGED: (
        1,
        frozenset({"incident_id", "code", "from_state", "to_state", "action", "phase", "actor"}),
    ),
    INCIDENT_MERGED: (
        1,
        frozenset({"incident_id", "code", "primary_id", "primary_code", "reporter_count"}),
    ),
    INCIDENT_UNMERGED: (
        1,
        frozenset({"incident_id", "code", "primary_id", "primary_code", "reporter_count"}),
    ),
    INCIDENT_REPLY_ADDED: (1, frozenset({"incident_id", "code", "entry_id"})),
    INCIDENT_NOTE_ADDED: (1, frozenset({"incident_id", "code", "entry_id"})),
    INCIDENT_ATTACHMENT_ADDED: (1, frozenset({"incident_id", "code", "attachment_id"})),
    INCIDENT_UPDATED: (1, frozenset({"incident_id", "code", "fields"})),
    INCIDENT_ESCALATED: (1, frozenset({"incident_id", "code", "escalated"})),
    INCIDENT_RATED: (1, frozenset({"incident_id", "code", "score", "channel"})),
    CALL_ARRIVED: (1, _CALL_KEYS),
    CALL_QUEUED: (1, _CALL_KEYS | {"position"}),
    CALL_ANSWERED: (1, _CALL_KEYS | {"wait_s", "incident_code"}),
    CALL_ABANDONED: (1, _CALL_KEYS | {"wait_s", "callback_id"}),
    CALL_ENDED: (1, _CALL_KEYS | {"outcome", "incident_code"}),
    CALLBACK_CREATED: (1, frozenset({"callback_id", "call_id", "service", "reason", "automatic"})),
    CALLBACK_UPDATED: (1, frozenset({"callback_id", "call_id", "status", "attempts", "outcome"})),
    AGENT_STATE_CHANGED: (1, frozenset({"agent", "state", "previous", "reason"})),
    CHAT_HANDOFF_OPENED: (1, _HANDOFF_KEYS),
    CHAT_HANDOFF_UPDATED: (1, _HANDOFF_KEYS),
    # A fact that a transcript was kept, never its words (events carry no reporter content):
    # staff read the text through the calls API (`GET /api/v1/calls/{call_id}`).
    CALL_TRANSCRIPT_FINAL: (2, frozenset({"call_id", "kind", "transcript_id", "engine", "model"})),
    # Likewise for what a live tap is hearing: the words are the call's `live` in that API.
    CALL_TRANSCRIPT_PARTIAL: (2, frozenset({"call_id", "start_s", "end_s", "engine"})),
}
