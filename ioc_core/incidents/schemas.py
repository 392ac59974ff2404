"""Input shapes of the incident commands. Unknown fields are errors, limits are explicit."""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, model_validator

Channel = Literal[
    "phone",
    "zalo",
    "telegram",
    "web",
    "email",
    "camera",
    "sensor",
    "social",
    "cyber",
    "dossier",
    "rasa",  # Rasa's own chat channels, through the hub's actions (bots/rasa)
]
CHANNELS: tuple[str, ...] = get_args(Channel)
Priority = Literal["low", "normal", "high", "urgent"]
Severity = Literal["unknown", "minor", "moderate", "severe", "extreme"]  # as in CAP 1.2
Language = Literal["vi", "en"]

PHONE_PATTERN = r"^\+?[0-9]{3,15}$"
EMAIL_PATTERN = r"^[^@\s]{1,64}@[^@\s]{1,190}\.[^@\s]{2,}$"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class LocationIn(Strict):
    lat: float | None = Field(default=None, ge=-90, le=90, allow_inf_nan=False)
    lon: float | None = Field(default=None, ge=-180, le=180, allow_inf_nan=False)
    address: str = Field(default="", max_length=500)
    area_code: str | None = Field(default=None, max_length=32)

    @model_validator(mode="after")
    def _complete(self) -> LocationIn:
        if (self.lat is None) != (self.lon is None):
            raise ValueError("lat and lon come together")
        if self.lat is None and not self.area_code:
            raise ValueError("location needs coordinates (lat, lon) or an area_code")
        return self

    @property
    def has_point(self) -> bool:
        return self.lat is not None and self.lon is not None


class ReporterIn(Strict):
    name: str = Field(default="", max_length=200)
    phone: str = Field(default="", max_length=16, pattern=r"^$|" + PHONE_PATTERN)
    email: str = Field(default="", max_length=254, pattern=r"^$|" + EMAIL_PATTERN)
    channel_user_id: str = Field(default="", max_length=200)
    confidential: bool = False


class ReportIn(Strict):
    category: str = Field(min_length=1, max_length=64)
    title: str = Field(default="", max_length=200)
    description: str = Field(default="", max_length=5000)
    channel: Channel = "web"
    priority: Priority | None = None
    severity: Severity = "unknown"
    language: Language = "vi"
    location: LocationIn | None = None
    reporter: ReporterIn = Field(default_factory=ReporterIn)
    external_ref: str | None = Field(default=None, max_length=100)
    # A call-taker's draft (phone) may lack a location until it is submitted.
    draft: bool = False
    # Staff-only text kept with the report as its first internal note (e.g. what a phone call
    # told about the caller): never part of the public title or description.
    internal_note: str = Field(default="", max_length=5000)

    @model_validator(mode="after")
    def _located(self) -> ReportIn:
        if self.location is None and not self.draft:
            raise ValueError("location is required (lat/lon or area_code)")
        return self


class UpdateIn(Strict):
    """Fields staff may correct while an incident is open or active (e.g. completing a draft)."""

    category: str | None = Field(default=None, min_length=1, max_length=64)
    title: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=5000)
    priority: Priority | None = None
    severity: Severity | None = None
    location: LocationIn | None = None
    reporter: ReporterIn | None = None

    @model_validator(mode="after")
    def _no_null(self) -> UpdateIn:
        # None means "not sent"; an explicit null would be written as is and break a NOT NULL
        # column (a 500 on PostgreSQL, found by fuzzing). Clearing is done with "".
        nulls = sorted(k for k in self.model_fields_set if getattr(self, k) is None)
        if nulls:
            raise ValueError(f"{', '.join(nulls)}: null is not a value; leave the field out")
        return self


class TransitionIn(Strict):
    action: str = Field(min_length=1, max_length=32)
    note: str = Field(default="", max_length=5000)
    agency: str | None = Field(default=None, max_length=32)


class EntryIn(Strict):
    body: str = Field(min_length=1, max_length=5000)


class RatingIn(Strict):
    score: int = Field(ge=1, le=5, description="satisfaction, 1 (very poor) to 5 (very good)")
    comment: str = Field(default="", max_length=1000)
    # A channel adapter (service role) rates for the reporter it knows by this id there.
    channel: Channel = "web"
    channel_user_id: str = Field(default="", max_length=200)


class MergeIn(Strict):
    primary: str = Field(min_length=1, max_length=36, description="id or tracking code")
    note: str = Field(default="", max_length=5000)


class UnmergeIn(Strict):
    note: str = Field(min_length=1, max_length=5000)


class EscalateIn(Strict):
    escalated: bool = True
    note: str = Field(default="", max_length=5000)
