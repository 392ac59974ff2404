"""A SIP phone for call-takers' desks without a browser console and for end-to-end tests."""

from telephony.softphone.agent_phone import (
    AgentPhone,
    AnswerMode,
    CallPhase,
    EndReason,
    NoSuchCall,
    PhoneCall,
    PhoneError,
    RegistrationFailed,
    RegistrationRefused,
    RegistrationTimeout,
)

__all__ = [
    "AgentPhone",
    "AnswerMode",
    "CallPhase",
    "EndReason",
    "NoSuchCall",
    "PhoneCall",
    "PhoneError",
    "RegistrationFailed",
    "RegistrationRefused",
    "RegistrationTimeout",
]
