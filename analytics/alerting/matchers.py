"""Alertmanager label matchers: `name="v"`, `name!="v"`, `name=~"re"`, `name!~"re"` (amtool's syntax), anchored."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property

LABEL_NAME_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_MATCHER_RE = re.compile(r'^\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*(.*?)\s*$', re.S)


@dataclass(frozen=True)
class Matcher:
    """One matcher in Alertmanager API v2's shape; a regex matches the whole value (as Alertmanager anchors it)."""

    name: str
    value: str
    is_regex: bool = False
    is_equal: bool = True

    def __post_init__(self) -> None:
        if not LABEL_NAME_RE.fullmatch(self.name):
            raise ValueError(f"label name {self.name!r} must match [a-zA-Z_][a-zA-Z0-9_]*")
        if self.is_regex:
            try:
                re.compile(self.value)
            except re.error as exc:
                raise ValueError(f"{self.name}: {self.value!r} is not a valid regular expression ({exc})") from None

    @cached_property
    def _pattern(self) -> re.Pattern[str]:
        return re.compile(self.value)

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether the label set satisfies this matcher (a missing label is the empty string)."""
        actual = labels.get(self.name, "")
        hit = bool(self._pattern.fullmatch(actual)) if self.is_regex else actual == self.value
        return hit if self.is_equal else not hit

    @property
    def op(self) -> str:
        """The operator as amtool writes it."""
        return {(False, True): "=", (False, False): "!=", (True, True): "=~", (True, False): "!~"}[
            (self.is_regex, self.is_equal)]

    def __str__(self) -> str:
        return f"{self.name}{self.op}{_quote(self.value)}"

    def api(self) -> dict[str, object]:
        """Alertmanager API v2's JSON form."""
        return {"name": self.name, "value": self.value, "isRegex": self.is_regex, "isEqual": self.is_equal}


def _quote(v: str) -> str:
    return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _unquote(raw: str) -> str:
    if len(raw) >= 2 and raw[0] == raw[-1] == '"':
        out, i, body = [], 0, raw[1:-1]
        while i < len(body):
            c = body[i]
            if c == "\\" and i + 1 < len(body):
                nxt = body[i + 1]
                out.append({"n": "\n", "t": "\t"}.get(nxt, nxt))
                i += 2
                continue
            if c == '"':
                raise ValueError(f"unescaped quote inside {raw!r}")
            out.append(c)
            i += 1
        return "".join(out)
    if '"' in raw:
        raise ValueError(f"unbalanced quotes in {raw!r}")
    return raw


def parse_matcher(text: str) -> Matcher:
    """Parse one amtool matcher such as `function=~"pay.*"` or `severity!=info`; ValueError says what is wrong."""
    m = _MATCHER_RE.match(text)
    if m is None:
        raise ValueError(f"{text!r} is not a matcher like name=\"value\", name!=value, name=~\"regex\" "
                         "or name!~\"regex\"")
    name, op, raw = m.groups()
    return Matcher(name=name, value=_unquote(raw), is_regex=op in ("=~", "!~"), is_equal=op in ("=", "=~"))


def parse_matchers(texts: Iterable[str]) -> list[Matcher]:
    """Parse several matchers, also accepting one `{a="1", b!~"x"}` selector per item."""
    out: list[Matcher] = []
    for text in texts:
        t = text.strip()
        if t.startswith("{") and t.endswith("}"):
            out.extend(parse_matcher(part) for part in _split_selector(t[1:-1]) if part.strip())
        else:
            out.append(parse_matcher(t))
    return out


def _split_selector(body: str) -> list[str]:
    """Split `a="1", b="x,y"` at commas outside quotes."""
    parts: list[str] = []
    cur: list[str] = []
    quoted = escaped = False
    for c in body:
        if escaped:
            escaped = False
        elif c == "\\":
            escaped = True
        elif c == '"':
            quoted = not quoted
        elif c == "," and not quoted:
            parts.append("".join(cur))
            cur = []
            continue
        cur.append(c)
    parts.append("".join(cur))
    return parts


def all_match(matchers: Iterable[Matcher], labels: Mapping[str, str]) -> bool:
    """Whether every matcher matches (an empty list matches everything)."""
    return all(m.matches(labels) for m in matchers)
