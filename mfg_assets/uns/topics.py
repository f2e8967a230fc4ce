"""ISA-95 topic taxonomy of the plant's Unified Namespace.

A UNS topic names where a message comes from and what it is:
``{enterprise}/{site}/{area}/{line}/{cell}/{asset}/{message_class}``.
The Sparkplug B namespace (``spBv1.0/...``) lives in :mod:`mfg_assets.uns.sparkplug`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

# Topic segments end up in table rows, file names and metric labels: keep them to a
# conservative alphabet so no segment can smuggle a path separator or wildcard. Inside a
# segment '.', '-' and '_' are fine (``weld-01``, ``v1.2``), but a segment starts with a
# letter or digit, so ``.`` and ``..`` (path traversal once a segment names a folder) are
# refused; so are '%' (a percent-encoded '/' or NUL decoded later by someone else),
# whitespace and control characters. Matched with fullmatch: ``$`` alone would accept a
# trailing newline.
SEGMENT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")
HIERARCHY = ("enterprise", "site", "area", "line", "cell", "asset")


class MessageClass(StrEnum):
    SENSORS = "sensors"
    PROCESS = "process"
    INSPECTION = "inspection"
    TELEMETRY = "telemetry"
    PREDICTIONS = "predictions"
    FEEDBACK = "feedback"  # an operator's verdict on a prediction (mfg_assets.labeling)


class TopicError(ValueError):
    """A topic that is not a well-formed UNS topic."""


def check_segment(kind: str, value: str) -> str:
    """Return ``value`` if it is a safe topic segment, else raise TopicError."""
    if not isinstance(value, str) or not SEGMENT_RE.fullmatch(value):
        raise TopicError(
            f"{kind} {value!r} is not a valid UNS segment "
            "(1-64 chars of letters, digits, '_', '.', '-'; starting with a letter or digit)"
        )
    return value


@dataclass(frozen=True, slots=True)
class UnsTopic:
    enterprise: str
    site: str
    area: str
    line: str
    cell: str
    asset: str
    message_class: MessageClass

    def __post_init__(self) -> None:
        for kind in HIERARCHY:
            check_segment(kind, getattr(self, kind))

    def __str__(self) -> str:
        return format_topic(self)

    @property
    def path(self) -> tuple[str, ...]:
        return tuple(getattr(self, kind) for kind in HIERARCHY)


def parse_topic(topic: str) -> UnsTopic:
    """Parse an ISA-95 UNS topic; raise TopicError with the reason when it is not one."""
    parts = topic.split("/")
    if len(parts) != len(HIERARCHY) + 1:
        raise TopicError(
            f"topic {topic!r} has {len(parts)} levels; a UNS topic has {len(HIERARCHY) + 1}: "
            + "/".join(HIERARCHY)
            + "/<class>"
        )
    try:
        message_class = MessageClass(parts[-1])
    except ValueError:
        known = ", ".join(m.value for m in MessageClass)
        raise TopicError(
            f"topic {topic!r} ends in {parts[-1]!r}; expected one of {known}"
        ) from None
    return UnsTopic(*parts[:-1], message_class=message_class)


def format_topic(topic: UnsTopic) -> str:
    return "/".join((*topic.path, topic.message_class.value))


def topic_filter(
    enterprise: str = "+",
    site: str = "+",
    area: str = "+",
    line: str = "+",
    cell: str = "+",
    asset: str = "+",
    message_class: str = "+",
) -> str:
    """An MQTT subscription filter over the hierarchy; unnamed levels are wildcards."""
    levels = (enterprise, site, area, line, cell, asset, message_class)
    for kind, value in zip((*HIERARCHY, "message_class"), levels, strict=True):
        if value != "+":
            check_segment(kind, value)
    return "/".join(levels)
