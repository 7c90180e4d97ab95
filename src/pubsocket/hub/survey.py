"""One `channels` survey as the asking node keeps it, and what it returns (no I/O).

`hub.cluster` sends the survey over the control plane and routes each answer here (its
module docstring, "Survey" and "Bounds"). `Survey` holds who is expected, the answers
accepted so far and when it is done; an answer keeps at most the survey's `cap`
channels, each named in at most `MAX_PATTERN` characters with a positive count (the
rest of a malformed answer is dropped); `Survey.merged` sums the counts per channel,
this node's included, and keeps the busiest `cap`. The outcome is a `ChannelsSurvey`;
past the bounds, `SurveyRefused`.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

MAX_PATTERN = 1024  # characters of a survey's pattern (and of a channel in an answer)


@dataclasses.dataclass(frozen=True, slots=True)
class ChannelsSurvey:
    """Channels -> subscribers on every node that answered (the busiest first)."""

    channels: dict[str, int]
    nodes: int  # nodes counted in, this one included
    complete: bool  # False: the survey timed out before every node answered


class SurveyRefused(Exception):
    """Too many surveys at once or in the last second (`Settings.cluster_surveys_max`,
    `cluster_survey_rate`)."""


class Survey:
    """One running survey: the answers so far and when it is done."""

    __slots__ = ("answers", "cap", "counted", "done", "expected")

    def __init__(self, expected: set[str], cap: int) -> None:
        self.expected = expected  # the registry's nodes when it started
        self.counted: int | None = None  # other nodes the broker handed it to
        self.cap = cap
        self.answers: dict[str, list[tuple[str, int]]] = {}
        self.done = asyncio.get_running_loop().create_future()

    def check(self) -> None:
        if self.done.done():
            return
        # Every node of the registry answered, or as many as the broker handed the
        # request to (it does not count a killed node the registry still lists).
        if self.expected.issubset(self.answers) or (
                self.counted is not None and len(self.answers) >= self.counted):
            self.done.set_result(None)

    def add(self, node: str, channels: list[Any]) -> None:
        """Take `node`'s answer (decoded JSON, not yet checked): its first `cap` entries,
        those that are a [channel, count] pair as the module docstring says."""
        answer: list[tuple[str, int]] = []
        for entry in channels[: self.cap or None]:
            if (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str)
                    and len(entry[0]) <= MAX_PATTERN and isinstance(entry[1], int)
                    and not isinstance(entry[1], bool) and entry[1] > 0):
                answer.append((entry[0], entry[1]))
        self.answers[node] = answer
        self.check()

    def merged(self, local: list[tuple[str, int]]) -> dict[str, int]:
        """This node's channels (`local`) and every answer's, counts summed per channel,
        the busiest `cap` (0: all) first (ties by name)."""
        merged: dict[str, int] = dict(local)
        for answer in self.answers.values():
            for topic, count in answer:
                merged[topic] = merged.get(topic, 0) + count
        ranked = sorted(merged.items(), key=lambda c: (-c[1], c[0]))
        return dict(ranked[:self.cap] if self.cap else ranked)


__all__ = ["MAX_PATTERN", "ChannelsSurvey", "Survey", "SurveyRefused"]
