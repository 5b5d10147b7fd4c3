"""What every model of the vocabulary shares: strictness and UTC timestamps."""

from __future__ import annotations

from datetime import datetime, timezone

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    # Unknown keys are an error, so a typo in a config or an MQTT payload names the field
    # instead of being dropped silently.
    model_config = ConfigDict(extra="forbid")


def as_utc(ts: datetime | None) -> datetime | None:
    """A timestamp in UTC; one without a time zone is refused rather than guessed."""
    if ts is None:
        return None
    if ts.tzinfo is None:
        raise ValueError("timestamp must carry a time zone (UTC expected), e.g. 2025-06-01T12:00:00Z")
    return ts.astimezone(timezone.utc)
