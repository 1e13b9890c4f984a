"""`-o ahbe_conf=FILE`: extra HTTP headers for written objects, by file suffix or regular expression (ossfs format).

File format (ossfs 1.91.10 `addhead.cpp` and its sample_ahbe.conf):
  * one rule a line, `SUFFIX HEADER VALUE...`, fields separated by blanks; `#` starts a comment line;
  * a line starting with a blank has no suffix: it applies to every object;
  * a suffix `reg:REGEX` is a regular expression searched in the path instead;
  * VALUE is the rest of the line (surrounding blanks removed) and may be empty.
Matching (ossfs rules): the path is the object's path inside the mount with a leading `/` (`/dir/file.gz`, the
mount's prefix left out). A suffix matches a path that ends with it and is longer than it; every matching rule
applies, in file order, so a later rule's value for the same header wins.

Sans-IO except `load_ahbe_file`; errors are ConfigError naming the file and line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ossmount.errors import ConfigError

REGEX_PREFIX = "reg:"
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


@dataclass(frozen=True)
class HeaderRule:
    """One line: `header: value` for paths ending in `suffix` (empty: all) or matching `pattern`."""

    header: str
    value: str
    suffix: str = ""
    pattern: re.Pattern[str] | None = None

    def matches(self, path: str) -> bool:
        if self.pattern is not None:
            return self.pattern.search(path) is not None
        return len(self.suffix) < len(path) and path.endswith(self.suffix)


def parse_ahbe(text: str, *, source: str = "ahbe_conf") -> tuple[HeaderRule, ...]:
    """The rules of an ahbe_conf file's text, in order."""
    rules = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        where = f"{source}:{number}"
        fields = line.split(None, 2) if not line[0].isspace() else ["", *line.split(None, 1)]
        key = fields[0]
        header = fields[1] if len(fields) > 1 else ""
        value = fields[2].strip() if len(fields) > 2 else ""
        if not header:
            raise ConfigError(f"{where}: {key!r} names no HTTP header (expected SUFFIX HEADER VALUE)")
        if not _HEADER_NAME.match(header):
            raise ConfigError(f"{where}: {header!r} is not an HTTP header name")
        if not (value.isascii() and value.isprintable()):
            raise ConfigError(f"{where}: the value of {header} must be printable ASCII")
        if key.lower().startswith(REGEX_PREFIX):
            expression = key[len(REGEX_PREFIX):]
            if not expression:
                raise ConfigError(f"{where}: 'reg:' with no regular expression")
            try:
                pattern = re.compile(expression)
            except re.error as exc:
                raise ConfigError(f"{where}: bad regular expression {expression!r}: {exc}") from None
            rules.append(HeaderRule(header, value, pattern=pattern))
        else:
            rules.append(HeaderRule(header, value, suffix=key))
    return tuple(rules)


def headers_for(rules: tuple[HeaderRule, ...], path: str) -> dict[str, str]:
    """The extra headers for the object at mount path `path` ("/dir/file.gz")."""
    headers: dict[str, str] = {}
    for rule in rules:
        if rule.matches(path):
            for existing in [name for name in headers if name.lower() == rule.header.lower()]:
                del headers[existing]
            headers[rule.header] = rule.value
    return headers


def load_ahbe_file(path: str) -> tuple[HeaderRule, ...]:
    """Read and parse an ahbe_conf file; ConfigError if it cannot be read or has a bad line."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read ahbe_conf file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"ahbe_conf file {path} is not UTF-8 text") from None
    return parse_ahbe(text, source=path)


def key_headers(rules: tuple[HeaderRule, ...], prefix: str):
    """A `key -> headers` function for the store: keys under the mount's `prefix` are matched by their path in the
    mount, as ossfs matches FUSE paths."""

    def extra(key: str) -> dict[str, str]:
        relative = key[len(prefix):] if key.startswith(prefix) else key
        return headers_for(rules, "/" + relative)

    return extra
