"""ListObjects / ListObjectsV2 answers, parsed once per page with no per-field searches (sans-IO).

A LIST of 1,000 keys is the most parsed answer the mount sees (`ls -l`, readdir); oss2's parser looks every field
up by path and parses each time with a regular expression, several times what this costs. The rules are oss2's
(`xml_utils.parse_list_objects[_v2]`, oss-api.md §2.5):
  1. With `<EncodingType>url</EncodingType>` keys, common prefixes and the next marker / continuation token are
     percent-decoded (UTF-8; bytes that are not UTF-8 become U+FFFD, as oss2 decodes them).
  2. `IsTruncated` is `true` or `false`; the next marker (V1 `NextMarker`) or continuation token (V2
     `NextContinuationToken`) is read only when it is `true`.
  3. Every `Contents` has `Key`, `LastModified` (ISO 8601, to the second: fractions are dropped, as oss2 does),
     `ETag` (quotes stripped) and `Size` (a decimal integer >= 0); `Type` and `StorageClass` default to Normal and
     Standard (S3-compatible servers leave them out); `RestoreInfo` is optional.
  4. Anything else — not XML, a missing or malformed field — raises `ListingError`.
"""

from __future__ import annotations

import calendar
import re
import urllib.parse
from dataclasses import dataclass
from xml.etree import ElementTree

from ossmount.store.types import ObjectInfo

_ISO8601 = re.compile(r"\s*(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.\d+)?Z?\s*")


class ListingError(ValueError):
    """A listing answer that breaks the rules (module docstring)."""


@dataclass(frozen=True)
class Listing:
    """One parsed page: its objects (`from_listing` ObjectInfos), common prefixes and the token of the next page
    (None unless truncated)."""

    objects: list[ObjectInfo]
    prefixes: list[str]
    truncated: bool
    next_token: str | None


def iso8601_seconds(text: str, _cache: dict[str, float] = {}) -> float:  # noqa: B006 - a deliberate memo
    """Epoch seconds of an ISO 8601 UTC time as OSS writes it (2012-02-24T06:07:48.000Z), fractions dropped."""
    seconds = _cache.get(text)
    if seconds is not None:
        return seconds
    match = _ISO8601.fullmatch(text)
    if match is None:
        raise ListingError(f"{text!r} is not an ISO 8601 time")
    year, month, day, hour, minute, second = map(int, match.groups())
    if not (1 <= month <= 12 and 1 <= day <= 31 and hour <= 23 and minute <= 59 and second <= 60):
        raise ListingError(f"{text!r} is not an ISO 8601 time")
    seconds = float(calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0)))
    if len(_cache) > 4096:  # keys written in bursts share their seconds; keep the memo small
        _cache.clear()
    _cache[text] = seconds
    return seconds


def _unquote(text: str) -> str:
    if "%" not in text:
        return text
    if text.count("%") == text.count("%2F"):  # only '/' encoded, as in most keys: the same answer, 10 times faster
        return text.replace("%2F", "/")
    return urllib.parse.unquote(text)


def parse_listing(body: bytes, *, v2: bool) -> Listing:
    """The page in `body` (module rules); ListingError if it breaks them."""
    try:
        root = ElementTree.fromstring(body)
    except (ElementTree.ParseError, ValueError, LookupError) as exc:
        raise ListingError(f"not XML: {exc}") from None
    encoding = root.findtext("EncodingType")
    decode = _unquote if encoding is not None and encoding == "url" else _same
    objects: list[ObjectInfo] = []
    prefixes: list[str] = []
    truncated_text: str | None = None
    token: str | None = None
    token_tag = "NextContinuationToken" if v2 else "NextMarker"
    for node in root:
        tag = node.tag
        if tag == "Contents":
            objects.append(_object(node, decode))
        elif tag == "CommonPrefixes":
            prefix = node.find("Prefix")
            if prefix is None:
                raise ListingError("CommonPrefixes without Prefix")
            prefixes.append(decode(prefix.text or ""))
        elif tag == "IsTruncated":
            truncated_text = node.text or ""
        elif tag == token_tag:
            token = decode(node.text or "")
    if truncated_text not in ("true", "false"):
        raise ListingError(f"IsTruncated is {truncated_text!r}, not true or false")
    truncated = truncated_text == "true"
    if truncated and token is None and v2:
        raise ListingError("a truncated listing without NextContinuationToken")
    return Listing(objects, prefixes, truncated, token if truncated else None)


def _same(text: str) -> str:
    return text


def _object(node: ElementTree.Element, decode) -> ObjectInfo:
    fields: dict[str, str] = {}
    for child in node:
        fields[child.tag] = child.text or ""
    try:
        key, modified, etag, size = fields["Key"], fields["LastModified"], fields["ETag"], fields["Size"]
    except KeyError as missing:
        raise ListingError(f"Contents without {missing.args[0]}") from None
    size = size.strip()
    if not size.isdigit() or not size.isascii():
        raise ListingError(f"Size {size!r} is not a byte count")
    return ObjectInfo.listed(decode(key), int(size), etag.strip('"'), iso8601_seconds(modified),
                             fields.get("Type") or "Normal", fields.get("StorageClass") or "Standard",
                             fields.get("RestoreInfo"))


# The head of a page (everything before its first entry) is a few hundred bytes; past this many without an entry,
# the next page's token is not looked for early.
HEAD_LIMIT = 64 * 1024
_ENTRY_TAGS = (b"<Contents>", b"<Contents ", b"<CommonPrefixes>", b"<CommonPrefixes ", b"</ListBucketResult")


class ListingHead:
    """The next page's token, read from the head of a page as its body arrives (sans-IO; `store.pages` pipelines
    the pages with it).

    OSS writes `IsTruncated` and `NextContinuationToken` (V2) or `NextMarker` (V1) before the page's first
    `Contents` (oss-api.md §2.5, ListObjectsV2 answer example; S3 does the same for V2), so the next page can be
    asked for as soon as the head of a page has arrived. `feed(data)` takes the body's bytes in order and returns
    True once the head is decided: then `known` says whether it told, and `next_token` is the next page's token
    (decoded as module rule 1; None: this is the last page). An answer that puts these fields after its entries,
    leaves the token out (V1 without a delimiter) or is not well-formed is decided with `known` False. The token read
    early is a guess only: the page's own parse (`parse_listing`) stays the answer, and `store.pages` drops a page
    asked for with a token the parse does not confirm."""

    def __init__(self, *, v2: bool):
        self._token_tag = "NextContinuationToken" if v2 else "NextMarker"
        self._head = bytearray()
        self.decided = False
        self.known = False
        self.next_token: str | None = None

    def feed(self, data: bytes | bytearray | memoryview) -> bool:
        if self.decided:
            return True
        searched_from = max(len(self._head) - 20, 0)  # a tag split across two pieces is still found
        self._head += data
        ends = [at for at in (self._head.find(tag, searched_from) for tag in _ENTRY_TAGS) if at >= 0]
        if not ends:
            if len(self._head) > HEAD_LIMIT:
                self._decide(None)
            return self.decided
        self._decide(bytes(self._head[:min(ends)]))
        return True

    def _decide(self, head: bytes | None) -> None:
        self.decided = True
        self._head = bytearray()
        if head is None:
            return
        parser = ElementTree.XMLPullParser(events=("start", "end"))
        fields: dict[str, str] = {}
        depth = 0
        try:
            parser.feed(head)
            for event, node in parser.read_events():
                if event == "start":
                    depth += 1
                    continue
                depth -= 1
                if depth == 1:
                    fields[node.tag] = node.text or ""
        except ElementTree.ParseError:
            return
        truncated = fields.get("IsTruncated")
        if truncated == "false":
            self.known = True
        elif truncated == "true" and fields.get(self._token_tag):
            decode = _unquote if fields.get("EncodingType") == "url" else _same
            self.known = True
            self.next_token = decode(fields[self._token_tag])
