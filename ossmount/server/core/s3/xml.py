"""OSS response documents rewritten as S3 documents, and the S3 error document, sans-IO.

The object operations render OSS XML; the S3 dialect passes each body through `to_s3_document`, which keeps the
shape both APIs share (ListBucketResult V1/V2, ListAllMyBucketsResult, multipart, copy and delete results),
drops the OSS-only elements (`Type`, `RestoreInfo`, `HashCrc64ecma`, the endpoint fields of a bucket), maps
storage classes to S3 names, writes ETags as S3 does (lower-case hex) and puts S3's namespace on the root
(AWS S3 API reference, "ListObjectsV2", "ListBuckets", "CompleteMultipartUpload", "Error responses").
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from ossmount.server.core.errors import OssError
from ossmount.server.core.xmlio import XML_DECLARATION, element, leaf, render

S3_NAMESPACE = "http://s3.amazonaws.com/doc/2006-03-01/"

# OSS storage class -> S3 storage class, and back (S3 classes without an OSS equivalent map to the nearest one).
STORAGE_CLASS_TO_S3 = {"Standard": "STANDARD", "IA": "STANDARD_IA", "Archive": "GLACIER",
                       "ColdArchive": "DEEP_ARCHIVE", "DeepColdArchive": "DEEP_ARCHIVE"}
STORAGE_CLASS_FROM_S3 = {"STANDARD": "Standard", "REDUCED_REDUNDANCY": "Standard", "INTELLIGENT_TIERING": "Standard",
                         "STANDARD_IA": "IA", "ONEZONE_IA": "IA", "GLACIER_IR": "IA", "GLACIER": "Archive",
                         "DEEP_ARCHIVE": "ColdArchive"}

# Elements that only OSS returns, per parent element.
_DROP = {
    "Contents": {"Type", "RestoreInfo"},
    "Version": {"Type", "RestoreInfo"},
    "Part": {"HashCrc64ecma"},
    "Bucket": {"ExtranetEndpoint", "IntranetEndpoint", "Location", "Region", "StorageClass"},
    "ListAllMyBucketsResult": {"Prefix", "Marker", "MaxKeys", "IsTruncated", "NextMarker"},
}

# OSS error codes whose S3 name differs (status, code).
_ERROR_CODES = {
    "InvalidSecurityToken": (403, "InvalidToken"),
    "FileAlreadyExists": (412, "PreconditionFailed"),
    "InvalidObjectName": (400, "InvalidArgument"),
    "SymlinkTargetNotExist": (404, "NoSuchKey"),
}
# Error elements renamed or dropped in S3 error documents.
_ERROR_EXTRA_NAMES = {"OSSAccessKeyId": "AWSAccessKeyId", "EC": None, "RecommendDoc": None}


def s3_etag(value: str) -> str:
    """An OSS ETag (upper-case hex, quoted or not) as S3 writes it (lower-case hex)."""
    return value.lower()


def to_s3_document(body: bytes, region: str) -> bytes:
    """Rewrite one OSS response document as S3's; `region` answers GetBucketLocation. Unknown documents (OSS-only
    operations) pass with only the namespace added."""
    try:
        root = ET.fromstring(body)
    except ET.ParseError:
        return body
    if root.tag == "LocationConstraint":
        root.text = region
    _rewrite(root)
    root.set("xmlns", S3_NAMESPACE)
    return render(root)


def _rewrite(node: ET.Element) -> None:
    drop = _DROP.get(node.tag, set())
    for child in list(node):
        if child.tag in drop:
            node.remove(child)
            continue
        if child.tag == "StorageClass" and child.text:
            child.text = STORAGE_CLASS_TO_S3.get(child.text, child.text)
        elif child.tag == "ETag" and child.text:
            child.text = s3_etag(child.text)
        _rewrite(child)


def s3_error(error: OssError, key: str | None) -> OssError:
    """The S3 form of an error the shared operations raised: code renamed where S3's differs, OSS-only elements
    dropped, OSSAccessKeyId renamed. A key too long for OSS is KeyTooLongError, as S3 names it."""
    status, code = _ERROR_CODES.get(error.code, (error.status, error.code))
    if error.code == "InvalidObjectName" and key is not None and len(key.encode("utf-8", "surrogatepass")) > 1023:
        code = "KeyTooLongError"
    extra = []
    for name, value in error.extra:
        renamed = _ERROR_EXTRA_NAMES.get(name, name)
        if renamed is not None:
            extra.append((renamed, value))
    return OssError(status, code, error.message, extra=extra, headers=list(error.headers))


def error_document(error: OssError, request_id: str, host_id: str) -> bytes:
    """S3's `<Error>` document: Code, Message, the error's own elements, RequestId, HostId (no namespace)."""
    root = element("Error", leaf("Code", error.code), leaf("Message", error.message))
    for tag, value in error.extra:
        root.append(leaf(tag, value))
    root.append(leaf("RequestId", request_id))
    root.append(leaf("HostId", host_id))
    return XML_DECLARATION + ET.tostring(root, encoding="utf-8")
