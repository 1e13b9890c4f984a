"""ossmount.fs.mime: Content-Type by extension from mime.types, with a built-in fallback."""

from __future__ import annotations

import logging

import pytest

from ossmount.errors import ConfigError
from ossmount.fs.mime import BUILTIN_TYPES, DEFAULT_CONTENT_TYPE, MimeTypes, parse_mime_types

SAMPLE = """\
# comment line
text/plain\t\t\t\ttxt text conf
image/jpeg jpeg jpg JPE   # trailing comment
application/x-first dup
application/x-second dup
application/x-noext
not-a-type foo
"""


def test_parse_mime_types():
    table = parse_mime_types(SAMPLE.splitlines())
    assert table == {"txt": "text/plain", "text": "text/plain", "conf": "text/plain", "jpeg": "image/jpeg",
                     "jpg": "image/jpeg", "jpe": "image/jpeg", "dup": "application/x-first"}


@pytest.fixture
def mime_file(tmp_path):
    path = tmp_path / "mime.types"
    path.write_text(SAMPLE)
    return path


@pytest.mark.parametrize("name, expected", [
    ("a.txt", "text/plain"),
    ("A.TXT", "text/plain"),
    ("dir/sub/photo.JpG", "image/jpeg"),
    ("x.jpe", "image/jpeg"),
    ("archive.tar.txt", "text/plain"),
    ("noext", DEFAULT_CONTENT_TYPE),
    (".txt", DEFAULT_CONTENT_TYPE),
    ("trailingdot.", DEFAULT_CONTENT_TYPE),
    ("a.unknown", DEFAULT_CONTENT_TYPE),
    ("dir.txt/file", DEFAULT_CONTENT_TYPE),
])
def test_lookup_from_file(mime_file, name, expected):
    mime = MimeTypes.load(mime_file)
    assert mime.source == str(mime_file)
    assert mime.content_type_for(name) == expected


def test_absent_file_uses_builtin_table_and_logs_info(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="ossmount.fs.mime"):
        mime = MimeTypes.load(tmp_path / "missing.types")
    assert mime.source == "built-in"
    assert mime.content_type_for("x.PNG") == "image/png"
    assert mime.content_type_for("x.json") == "application/json"
    assert mime.content_type_for("x.weird") == DEFAULT_CONTENT_TYPE
    records = [r for r in caplog.records if r.name == "ossmount.fs.mime"]
    assert records and all(r.levelno == logging.INFO for r in records)


def test_explicit_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="mime="):
        MimeTypes.load(tmp_path / "missing.types", required=True)


def test_system_file_or_builtin_serves_common_types():
    mime = MimeTypes.load()
    assert mime.content_type_for("index.html") == "text/html"
    assert mime.content_type_for("a.jpg") == "image/jpeg"


def test_builtin_table_is_well_formed():
    for extension, content_type in BUILTIN_TYPES.items():
        assert extension == extension.lower() and "." not in extension
        assert content_type.count("/") == 1
