"""XML rendering and parsing for OSS bodies, without namespaces (oss2 checks bare tag names)."""

from __future__ import annotations

import base64
import copy
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from urllib.parse import quote

from .errors import OssError

XML_DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>\n'
_CONTROL_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f]")
_SHIELDED = re.compile("\ue000([0-9a-f]{2})\ue001")


def element(tag: str, *children: ET.Element | None, text: str | None = None, **attrs: str) -> ET.Element:
    """An element with text or children (None children are skipped)."""
    node = ET.Element(tag, attrs)
    if text is not None:
        node.text = text
    for child in children:
        if child is not None:
            node.append(child)
    return node


def leaf(tag: str, value: object) -> ET.Element:
    """An element holding the str() of `value` ("true"/"false" for booleans)."""
    node = ET.Element(tag)
    if isinstance(value, bool):
        node.text = "true" if value else "false"
    elif value is not None:
        node.text = str(value)
    return node


_CDATA_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})
_ATTRIBUTE_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "\r": "&#13;",
                                    "\n": "&#10;", "\t": "&#09;"})


class _NotPlain(Exception):
    """The tree uses something `_serialize` does not render (namespaces, comments, tails, non-text values)."""


def _serialize(node: ET.Element, out: list[str]) -> None:
    """Append `node` as ElementTree writes it (short empty elements) to `out`; raises _NotPlain."""
    tag = node.tag
    if type(tag) is not str or tag[:1] == "{" or node.tail:
        raise _NotPlain()
    start = "<" + tag
    if node.attrib:
        for name, value in node.attrib.items():
            if type(name) is not str or type(value) is not str or name[:1] == "{":
                raise _NotPlain()
            start += f' {name}="{value.translate(_ATTRIBUTE_ESCAPES)}"'
    text = node.text
    if text is not None and type(text) is not str:
        raise _NotPlain()
    if not text and not len(node):
        out.append(start + " />")
        return
    out.append(start + ">" + text.translate(_CDATA_ESCAPES) if text else start + ">")
    for child in node:
        _serialize(child, out)
    out.append("</" + tag + ">")


def leaf_xml(tag: str, value: object) -> str:
    """`leaf(tag, value)` as `render` writes it, for documents assembled from many fragments (listings)."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    else:
        text = "" if value is None else str(value)
    return f"<{tag}>{text.translate(_CDATA_ESCAPES)}</{tag}>" if text else f"<{tag} />"


def render(root: ET.Element, fragments: list[str] | None = None) -> bytes:
    """Serialize an element tree as an XML document: byte for byte what `ET.tostring(root, encoding="utf-8")` gives
    (characters UTF-8 cannot encode, such as lone surrogates, as character references), rendered directly because
    ElementTree's writer costs ~15 ms for a listing page of 1000 keys; trees with namespaces, comments or tails go
    through ElementTree.

    `fragments` are rendered elements (`leaf_xml`, or strings of them) appended after the root's children."""
    out: list[str] = []
    try:
        _serialize(root, out)
    except _NotPlain:
        if fragments:
            root = copy.copy(root)
            root.extend(ET.fromstring(f"<_>{''.join(fragments)}</_>"))
        return XML_DECLARATION + ET.tostring(root, encoding="utf-8", short_empty_elements=True)
    if fragments:
        if out[-1] == f"</{root.tag}>":
            out[-1:] = [*fragments, out[-1]]
        else:  # rendered as an empty element
            out[-1:] = [f"{out[-1][:-3]}>", *fragments, f"</{root.tag}>"]
    return XML_DECLARATION + "".join(out).encode("utf-8", "xmlcharrefreplace")


def url_encode_if(value: str, encode: bool) -> str:
    """Percent-encode for encoding-type=url (UTF-8, space as %20, '/' encoded as OSS does)."""
    return quote(value, safe="") if encode else value


def error_document(error: OssError, request_id: str, host_id: str) -> bytes:
    """The OSS <Error> document for an OssError."""
    root = element(
        "Error",
        leaf("Code", error.code),
        leaf("Message", error.message),
        leaf("RequestId", request_id),
        leaf("HostId", host_id),
    )
    for tag, value in error.extra:
        root.append(leaf(tag, value))
    if error.ec:
        root.append(leaf("EC", error.ec))
        root.append(leaf("RecommendDoc", f"https://api.aliyun.com/troubleshoot?q={error.ec}"))
    return render(root)


def error_header_value(document: bytes) -> str:
    """The `x-oss-err` header value (base64 of the error XML) used for HEAD errors."""
    return base64.b64encode(document).decode("ascii")


def malformed(message: str = "The XML you provided was not well-formed or did not validate against our published schema.") -> OssError:
    return OssError(400, "MalformedXML", message, ec="0031-00000001")


def parse_document(body: bytes, root_tag: str) -> ET.Element:
    """Parse `body` and check its root tag (ignoring any namespace), else MalformedXML."""
    if not body.strip():
        raise malformed()
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise malformed() from exc
    # oss2 sends keys with XML-1.0-illegal control characters verbatim (e.g. "\x0c" in a batch
    # delete) and OSS accepts them, so shield them from expat and restore them afterwards.
    shielded = _CONTROL_CHARS.sub(lambda m: f"\ue000{ord(m.group()):02x}\ue001", text)
    try:
        root = ET.fromstring(shielded.encode("utf-8"))
    except ET.ParseError as exc:
        raise malformed() from exc
    if shielded != text:
        for node in root.iter():
            if node.text:
                node.text = _SHIELDED.sub(lambda m: chr(int(m.group(1), 16)), node.text)
    _strip_namespaces(root)
    if root.tag != root_tag:
        raise malformed()
    return root


def _strip_namespaces(root: ET.Element) -> None:
    for node in root.iter():
        if isinstance(node.tag, str) and node.tag.startswith("{"):
            node.tag = node.tag.split("}", 1)[1]


def child_text(node: ET.Element, tag: str, default: str | None = None) -> str | None:
    found = node.find(tag)
    if found is None:
        return default
    return found.text or ""


@dataclass(frozen=True)
class DeleteEntry:
    key: str
    version_id: str | None


def parse_delete(body: bytes) -> tuple[bool, list[DeleteEntry]]:
    """Parse a DeleteMultipleObjects body into (quiet, entries).

    Keys in the request are raw even with encoding-type=url, which applies to the response only
    (oss2 sends raw keys and decodes the response)."""
    root = parse_document(body, "Delete")
    quiet = (child_text(root, "Quiet", "false") or "").strip().lower() == "true"
    entries = []
    for obj in root.findall("Object"):
        key = child_text(obj, "Key")
        if key is None:
            raise malformed()
        version = child_text(obj, "VersionId")
        entries.append(DeleteEntry(key, version or None))
    if len(entries) > 1000:
        raise malformed("The number of objects to delete exceeds 1000.")
    return quiet, entries


@dataclass(frozen=True)
class CompletePart:
    part_number: int
    etag: str


def parse_complete(body: bytes) -> list[CompletePart]:
    """Parse a CompleteMultipartUpload body into its parts in document order."""
    root = parse_document(body, "CompleteMultipartUpload")
    parts = []
    for part in root.findall("Part"):
        number = child_text(part, "PartNumber")
        etag = child_text(part, "ETag")
        if number is None or etag is None:
            raise malformed()
        try:
            parts.append(CompletePart(int(number.strip()), etag.strip().strip('"').upper()))
        except ValueError as exc:
            raise malformed() from exc
    return parts


@dataclass(frozen=True)
class RestoreRequest:
    days: int | None
    tier: str | None
    has_job_parameters: bool


def parse_restore(body: bytes) -> RestoreRequest:
    """Parse an optional RestoreRequest body."""
    if not body.strip():
        return RestoreRequest(None, None, False)
    root = parse_document(body, "RestoreRequest")
    days_text = child_text(root, "Days")
    try:
        days = int(days_text) if days_text else None
    except ValueError as exc:
        raise malformed() from exc
    job = root.find("JobParameters")
    tier = child_text(job, "Tier") if job is not None else None
    return RestoreRequest(days, tier, job is not None)


def parse_versioning(body: bytes) -> str:
    """The Status of a VersioningConfiguration body (Enabled or Suspended)."""
    root = parse_document(body, "VersioningConfiguration")
    status = (child_text(root, "Status") or "").strip()
    if status not in ("Enabled", "Suspended"):
        raise malformed()
    return status


def parse_create_bucket(body: bytes) -> str | None:
    """The StorageClass of an optional CreateBucketConfiguration body."""
    if not body.strip():
        return None
    root = parse_document(body, "CreateBucketConfiguration")
    storage_class = child_text(root, "StorageClass")
    return storage_class.strip() if storage_class else None
