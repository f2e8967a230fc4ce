"""Topic routing: which channel address (and parameter values) a concrete MQTT topic matches."""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from mfg_assets.uns.contract.model import Channel, Message, _Validator
from mfg_assets.uns.contract.schema import _coerce_scalar, _run_check, _strip_subject

_PARAM_RE = re.compile(r"\{([^{}/]+)\}")


@dataclass(slots=True)
class _Route:
    """Everything that can arrive on one address (several channels may share an address)."""

    address: str
    pattern: re.Pattern[str] | None  # None for a literal address
    param_names: tuple[str, ...]
    param_checks: dict[str, _Validator]
    channels: list[Channel] = field(default_factory=list)
    entries: list[tuple[Channel, Message]] = field(default_factory=list)  # (owner, message)

    def bind(self, values: Sequence[str]) -> tuple[dict[str, str], str | None]:
        """Map regex groups to parameter names and check them; (params, reason-if-rejected)."""
        params: dict[str, str] = {}
        for name, value in zip(self.param_names, values, strict=True):
            if params.setdefault(name, value) != value:
                return params, f"parameter {name} appears twice with different values"
            check = self.param_checks.get(name)
            if check is not None:
                problem = _run_check(check, value, coerce=_coerce_scalar)
                if problem is not None:
                    return params, (
                        f"channel {self.address!r}: parameter {name}={value!r} "
                        f"{_strip_subject(problem)}"
                    )
        return params, None


def _address_pattern(address: str) -> tuple[re.Pattern[str] | None, tuple[str, ...]]:
    parts = _PARAM_RE.split(address)  # literal, name, literal, name, ..., literal
    names = tuple(parts[1::2])
    if not names:
        return None, ()
    # A parameter is exactly one non-empty level of the topic: no "/" inside.
    regex = "".join(re.escape(p) if i % 2 == 0 else "([^/]+)" for i, p in enumerate(parts))
    return re.compile(regex), names


def _specificity(address: str) -> int:
    """More literal text first, so "a/status" beats "a/{x}" and "a/{x}/b" beats "a/{x}/{y}"."""
    return len(_PARAM_RE.sub("", address))


class _Router:
    """Topic -> (route, params), or the reason why no route took the topic."""

    def __init__(self, routes: list[_Route], cache_size: int) -> None:
        self._literal = {r.address: r for r in routes if r.pattern is None}
        # Parameterized routes bucketed by topic depth: a parameter never spans a "/".
        self._by_depth: dict[int, list[_Route]] = {}
        for route in sorted(routes, key=lambda r: -_specificity(r.address)):
            if route.pattern is not None:
                self._by_depth.setdefault(route.address.count("/"), []).append(route)
        # MQTT topics repeat a lot: remember recent topic -> route decisions.
        self.lookup = functools.lru_cache(maxsize=cache_size)(self._match_uncached)

    def _match_uncached(self, topic: str) -> tuple[_Route, dict[str, str]] | str:
        """(route, params), or the reason why no route took the topic ("" if none was close)."""
        route = self._literal.get(topic)
        if route is not None:
            return route, {}
        reason = ""
        for route in self._by_depth.get(topic.count("/"), ()):
            found = route.pattern.fullmatch(topic)  # type: ignore[union-attr]
            if found is None:
                continue
            params, problem = route.bind(found.groups())
            if problem is None:
                return route, params
            reason = reason or problem
        return reason
