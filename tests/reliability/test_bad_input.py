"""Bad input gets a clear error or a safe mapping, never an exception escaping to the user (issue 12, item 6).

Passwd files as editors and scripts save them; hypothesis fuzzing of the option parser (every ossfs option name
with random values, random junk, whole argv), of the passwd parser, and of what the store makes of a server's
answers. The answers are served by a ScriptedHttpServer (ossmount.testing): listing XML that is malformed,
truncated, huge, compressed, in odd encodings or holding keys of every byte value, length and component shape,
read through ObjectStore.list_page / list_all exactly as the mount reads a directory.
"""

from __future__ import annotations

import codecs
import gzip
import os
import urllib.parse
from xml.sax.saxutils import escape

import pytest
import trio
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from ossmount.credentials import (
    Credentials,
    parse_passwd_text,
    read_passwd_file,
    resolve_credentials,
)
from ossmount.errors import EXIT_CONFIG, ConfigError, QuietError, UsageError
from ossmount.fs import wtf8
from ossmount.fs.names import NAME_MAX, split_listing, unshowable_reason
from ossmount.mount import split_runtime_flags
from ossmount.options import (
    MOUNT_GENERIC_OPTIONS,
    OPTION_SPECS,
    parse_bucket_spec,
    parse_check_args,
    parse_mount_args,
)
from ossmount.store import ObjectStore, RetryPolicy, types
from ossmount.storeconfig import open_store
from ossmount.testing import ScriptedHttpServer, http_response

SECRET = "Sk3cretValue"
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# -- passwd files as editors save them ------------------------------------------------------------------------------

EDITOR_SHAPES = {
    "bom": codecs.BOM_UTF8 + b"bkt:AK:" + SECRET.encode() + b"\n",
    "bom-crlf": codecs.BOM_UTF8 + b"bkt:AK:" + SECRET.encode() + b"\r\n",
    "crlf-default-line": b"AK:" + SECRET.encode() + b"\r\n\r\n",
    "trailing-spaces-and-tabs": b"bkt:AK:" + SECRET.encode() + b" \t \n",
    "spaces-around-fields": b"  bkt : AK : " + SECRET.encode() + b"\n",
    "comments-and-blank-lines": b"# ossmount credentials\n\n   \n# other:X:Y\nbkt:AK:" + SECRET.encode() + b"\n\n",
    "indented-comment": b"   # comment\nbkt:AK:" + SECRET.encode() + b"\n",
    "no-final-newline": b"bkt:AK:" + SECRET.encode(),
    "utf16-le-notepad": ("bkt:AK:" + SECRET + "\r\n").encode("utf-16"),
    "utf16-be": codecs.BOM_UTF16_BE + ("bkt:AK:" + SECRET + "\n").encode("utf-16-be"),
    "bom-mid-file-after-cat": b"other:X:Y\n" + codecs.BOM_UTF8 + b"bkt:AK:" + SECRET.encode() + b"\n",
    "other-bucket-first": codecs.BOM_UTF8 + b"other:X:Y\r\nbkt:AK:" + SECRET.encode() + b"\r\n",
    "mac-classic-cr": b"# c\rbkt:AK:" + SECRET.encode() + b"\r",
}


@pytest.mark.parametrize("shape", sorted(EDITOR_SHAPES))
def test_passwd_file_as_editors_save_it(tmp_path, shape):
    path = tmp_path / "passwd"
    path.write_bytes(EDITOR_SHAPES[shape])
    path.chmod(0o600)
    found = resolve_credentials("bkt", passwd_file=path, environ={})
    assert (found.access_key_id, found.access_key_secret) == ("AK", SECRET)


def test_credentials_directory_files_with_bom_and_crlf(tmp_path):
    (tmp_path / "AccessKeyId").write_bytes(codecs.BOM_UTF8 + b"AK\r\n")
    (tmp_path / "AccessKeySecret").write_bytes(SECRET.encode() + b"\r\n")
    (tmp_path / "SecurityToken").write_bytes(codecs.BOM_UTF8 + b"TOKEN/with+base64=\n")
    found = read_passwd_file(tmp_path, "bkt")
    assert (found.access_key_id, found.access_key_secret, found.security_token) == ("AK", SECRET,
                                                                                    "TOKEN/with+base64=")


@pytest.mark.parametrize("text, line, what", [
    ("bkt:AK:Sk3cret\u00a0Value\n", 1, "U+00A0 (NO-BREAK SPACE)"),  # pasted from a web page
    ("# c\nbkt:A K:" + SECRET + "\n", 2, "a space"),
    ("bkt:AK:" + SECRET + "\u200b\n", 1, "U+200B (ZERO WIDTH SPACE)"),
    ("AK\x07:" + SECRET + "\n", 1, "U+0007"),
])
def test_a_stray_character_in_a_key_names_file_and_line_but_no_secret(text, line, what):
    with pytest.raises(ConfigError) as refused:
        parse_passwd_text(text, "bkt", source="/etc/pw")
    message = str(refused.value)
    assert message.startswith(f"/etc/pw:{line}: ") and what in message and "\n" not in message
    assert SECRET not in message and "Sk3cret" not in message


def test_a_file_that_is_not_text_is_one_clear_error(tmp_path):
    path = tmp_path / "passwd"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\xfd")
    path.chmod(0o600)
    with pytest.raises(ConfigError) as refused:
        resolve_credentials("bkt", passwd_file=path, environ={})
    assert str(refused.value) == f"credentials file {path} is not UTF-8 text"
    assert refused.value.exit_code == EXIT_CONFIG


_passwd_lines = st.one_of(
    st.text(max_size=60),
    st.builds(lambda b, a, s, pad: pad + ":".join(x for x in (b, a, s) if x is not None) + pad,
              st.one_of(st.none(), st.sampled_from(["bkt", "other", "", " bkt "])),
              st.text(max_size=12), st.text(max_size=12), st.sampled_from(["", " ", "\t", "\ufeff"])),
    st.sampled_from(["#", "", "   ", "bkt:AK:SK", "AK:SK", ":", "::", ":::", "\ufeff#x"]),
)


@FUZZ
@given(lines=st.lists(_passwd_lines, max_size=8), newline=st.sampled_from(["\n", "\r\n", "\r"]),
       encoding=st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "latin-1"]))
def test_fuzz_passwd_parser(tmp_path_factory, lines, newline, encoding):
    """Any file content: credentials whose keys are visible ASCII, None, or one ConfigError line naming the file."""
    try:
        data = newline.join(lines).encode(encoding)
    except UnicodeEncodeError:
        assume(False)
    path = tmp_path_factory.mktemp("pw") / "passwd"
    path.write_bytes(data)
    path.chmod(0o600)
    try:
        found = read_passwd_file(path, "bkt")
    except ConfigError as error:
        message = str(error)
        assert str(path) in message and "\n" not in message
        return
    if found is not None:
        for value in (found.access_key_id, found.access_key_secret):
            assert value and all("!" <= char <= "~" for char in value)


@FUZZ
@given(st.dictionaries(st.sampled_from(["OSS_ACCESS_KEY_ID", "OSS_ACCESS_KEY_SECRET", "OSS_SESSION_TOKEN",
                                        "OSSACCESSKEYID", "OSSSECRETACCESSKEY", "OSSSESSIONTOKEN"]),
                       st.text(max_size=20)))
def test_fuzz_environment_credentials(environ):
    try:
        found = resolve_credentials("bkt", environ=environ, default_path="/nonexistent/passwd")
    except ConfigError as error:
        assert "\n" not in str(error)
        return
    assert isinstance(found, Credentials) and found.access_key_id.isprintable()


# -- options ----------------------------------------------------------------------------------------------------------

_OPTION_NAMES = sorted({spec.name for spec in OPTION_SPECS} | set(MOUNT_GENERIC_OPTIONS))
_SPECIAL_VALUES = ["", "0", "1", "2", "-1", "auto", "kms", "kmsid", "kmsid:k", "http://h", "https://[::1]:9",
                   "oss-cn-hangzhou.aliyuncs.com", "b.oss-cn-hangzhou.aliyuncs.com", "/oss", "bkt:/a/b",
                   "1e308", "nan", "inf", "-0", "0777", "999999999999999999999", "crit", "debug", "private",
                   "Standard", "remount", "fail", "/nonexistent", "x" * 300]
_values = st.one_of(st.sampled_from(_SPECIAL_VALUES), st.text(max_size=40), st.integers().map(str),
                    st.floats(allow_nan=True, allow_infinity=True).map(str))
_option_items = st.one_of(
    st.builds(lambda name, value, bare: name if bare else f"{name}={value}",
              st.sampled_from(_OPTION_NAMES), _values, st.booleans()),
    st.text(max_size=30),
)


def _store_or_quiet_error(args, tmp_path) -> None:
    """What the mount does next with parsed options: build its store (no request is sent)."""
    try:
        open_store(args.bucket, args.options, prefix=args.prefix, environ={},
                   source=Credentials("AK", SECRET, None, "fuzz"), max_connections=1)
    except QuietError as error:
        assert "\n" not in str(error)


@FUZZ
@given(items=st.lists(_option_items, max_size=8))
def test_fuzz_option_strings(tmp_path_factory, items):
    """`-o` strings of every ossfs option name with random values, and junk: MountOptions that build a store, or
    one UsageError line."""
    text = ",".join(items)
    try:
        args = parse_mount_args(["bkt:/pre", "/mnt/x", "-o", text])
    except UsageError as error:
        assert "\n" not in str(error) and str(error)
        return
    assert args.options.fuse_options and args.fsname.isprintable()
    _store_or_quiet_error(args, tmp_path_factory.getbasetemp())


_argv_items = st.one_of(
    st.sampled_from(["-o", "-f", "-d", "-h", "--", "-", "--ready-fd", "--log-file", "--log-max-size",
                     "--status-interval", "--credentials-fd", "bkt", "bkt:/p", "/mnt", "-oro", "--options=uid=1",
                     "--ready-fd=x", "--log-backups=-1", "-x", "--foreground"]),
    st.text(max_size=20),
)


@FUZZ
@given(argv=st.lists(_argv_items, max_size=8))
def test_fuzz_whole_command_lines(argv):
    for parse in (lambda a: parse_mount_args(split_runtime_flags(a)[0]), parse_check_args):
        try:
            parse(argv)
        except UsageError as error:
            assert "\n" not in str(error)


@FUZZ
@given(st.text(max_size=80))
def test_fuzz_bucket_spec(spec):
    try:
        bucket, prefix = parse_bucket_spec(spec)
    except UsageError:
        return
    assert prefix == "" or (prefix.endswith("/") and not prefix.startswith("/") and "//" not in prefix)


# -- what the server answers: listings ----------------------------------------------------------------------------


def _contents(key: str, *, size: str = "1", modified: str = "2026-01-02T03:04:05.000Z", etag: str = '"e"',
              extra: str = "") -> str:
    return (f"<Contents><Key>{key}</Key><LastModified>{modified}</LastModified><ETag>{escape(etag)}</ETag>"
            f"<Type>Normal</Type><Size>{size}</Size><StorageClass>Standard</StorageClass>{extra}</Contents>")


def listing_xml(contents: list[str], prefixes: list[str] = (), *, truncated: str = "false", token: str | None = None,
                url_encoded: bool = True, declaration: str = '<?xml version="1.0" encoding="UTF-8"?>\n') -> str:
    """A ListObjectsV2 answer as OSS writes it (keys and prefixes already in their on-the-wire form)."""
    parts = [declaration, "<ListBucketResult><Name>bkt</Name><Prefix></Prefix><MaxKeys>1000</MaxKeys>",
             "<Delimiter>/</Delimiter>", "<EncodingType>url</EncodingType>" if url_encoded else "",
             f"<IsTruncated>{truncated}</IsTruncated>",
             f"<NextContinuationToken>{token}</NextContinuationToken>" if token is not None else ""]
    parts += contents
    parts += [f"<CommonPrefixes><Prefix>{p}</Prefix></CommonPrefixes>" for p in prefixes]
    return "".join(parts) + "</ListBucketResult>"


@pytest.fixture(scope="module")
def scripted():
    """One ScriptedHttpServer for the module's fuzzers; each example sets its answer."""
    with ScriptedHttpServer(lambda request: http_response(500)) as server:
        yield server


def _serving(server: ScriptedHttpServer, answer) -> ScriptedHttpServer:
    server.answer = answer
    server.requests.clear()
    return server


def _answer_with(body: bytes, headers: dict[str, str] | None = None, **kwargs):
    response = http_response(200, body, {"Content-Type": "application/xml", **(headers or {})}, **kwargs)
    return lambda request: response


def _list(server: ScriptedHttpServer, *, prefix: str = "", whole: bool = False):
    """list_page (or list_all) through a fresh store against `server`: the page, or the StoreError raised."""

    async def run():
        store = ObjectStore.create(endpoint=server.endpoint, bucket="bkt", credentials=Credentials("AK", SECRET),
                                   retry=RetryPolicy.no_retries(), timeout=10, connect_timeout=5)
        if whole:
            return await store.list_all(prefix)
        return await store.list_page(prefix)

    try:
        return trio.run(run)
    except types.StoreError as error:
        return error


def assert_usable_or_store_error(result, prefix: str = "") -> None:
    """The only acceptable outcomes: a well-typed ListPage whose entries lie under the prefix, or a StoreError
    (the mount's errno boundary turns it into EIO and one log line)."""
    if isinstance(result, types.StoreError):
        assert str(result) and "\n" not in str(result).strip()
        return
    assert isinstance(result, types.ListPage)
    for info in result.objects:
        assert isinstance(info.key, str) and info.key.startswith(prefix)
        assert isinstance(info.size, int) and isinstance(info.mtime, float)
    assert all(isinstance(p, str) and p.startswith(prefix) for p in result.prefixes)
    assert result.next_token is None or isinstance(result.next_token, str)


_xml_text = st.text(max_size=30)
_contents_xml = st.builds(
    lambda key, size, modified, etag, extra: _contents(key, size=size, modified=modified, etag=etag, extra=extra),
    st.one_of(_xml_text.map(escape), _xml_text.map(lambda t: urllib.parse.quote(t, safe=""))),
    st.one_of(st.sampled_from(["0", "1", "-1", "", "1e3", " 7 ", "99999999999999999999999"]), _xml_text.map(escape)),
    st.one_of(st.sampled_from(["2026-01-02T03:04:05.000Z", "", "yesterday", "2026-13-45T99:99:99.000Z"]),
              _xml_text.map(escape)),
    _xml_text, st.sampled_from(["", "<Owner><ID>1</ID></Owner>", "<Owner/>", "<RestoreInfo>x</RestoreInfo>",
                                "<Key>second</Key>", "<Contents/>"]),
)


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(contents=st.lists(_contents_xml, max_size=4),
       prefixes=st.lists(st.one_of(_xml_text.map(escape), st.sampled_from(["a/", "", "%ZZ", "%00/"])), max_size=3),
       truncated=st.sampled_from(["false", "true", "TRUE", "", "yes"]),
       token=st.one_of(st.none(), _xml_text.map(escape)),
       url_encoded=st.booleans(),
       cut=st.one_of(st.none(), st.integers(0, 2000)),
       flip=st.one_of(st.none(), st.tuples(st.integers(0, 2000), st.integers(0, 255))))
def test_fuzz_listing_xml(scripted, contents, prefixes, truncated, token, url_encoded, cut, flip):
    """Listing documents with any field missing, empty, non-numeric or out of range, then truncated or with a byte
    changed: a usable page or a StoreError (InvalidResponse), never another exception."""
    body = listing_xml(contents, prefixes, truncated=truncated, token=token, url_encoded=url_encoded).encode()
    if flip is not None:
        position, value = flip
        if position < len(body):
            body = body[:position] + bytes([value]) + body[position + 1:]
    if cut is not None:
        body = body[:cut]
    assert_usable_or_store_error(_list(_serving(scripted, _answer_with(body))))


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(body=st.binary(max_size=400), declared=st.one_of(st.none(), st.integers(0, 10_000)))
def test_fuzz_listing_bytes(scripted, body, declared):
    """Arbitrary bytes, with a Content-Length that may promise more than is sent (a dropped connection)."""
    assert_usable_or_store_error(_list(_serving(scripted, _answer_with(body, content_length=declared))))


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "gbk", "iso-8859-1", "x-no-such-charset", "ebcdic"])
def test_listing_in_odd_encodings(encoding):
    """A declared encoding that expat knows is decoded; one it does not know is an InvalidResponse."""
    document = listing_xml([_contents("caf%C3%A9.txt")], declaration=f'<?xml version="1.0" encoding="{encoding}"?>')
    try:
        body = document.encode(encoding)
    except LookupError:
        body = document.encode("utf-8")
    with ScriptedHttpServer(_answer_with(body)) as server:
        result = _list(server)
    assert_usable_or_store_error(result)
    if encoding in ("utf-16", "iso-8859-1"):
        assert [o.key for o in result.objects] == ["café.txt"]
    if encoding == "x-no-such-charset":
        assert isinstance(result, types.TransientError) and result.code == "InvalidResponse"


def test_listing_larger_than_any_real_one_is_refused():
    """A body past the parse limit (64 MiB, 16 times a full 1,000-key page) is refused without being parsed."""
    filler = "<Contents>" + " " * (1024 * 1024 - 21) + "</Contents>"
    body = listing_xml([filler] * 65).encode()
    with ScriptedHttpServer(_answer_with(body)) as server:
        result = _list(server)
    assert isinstance(result, types.TransientError) and result.code == "InvalidResponse"
    assert "larger than" in str(result)


def test_compressed_listing_bomb_is_bounded_after_decoding():
    """A gzip body of 100 KiB that inflates to 100 MiB stops at the limit of decoded bytes."""
    body = gzip.compress(b"<ListBucketResult>" + b" " * (100 * 1024 * 1024) + b"</ListBucketResult>", 1)
    with ScriptedHttpServer(_answer_with(body, {"Content-Encoding": "gzip"})) as server:
        result = _list(server)
    assert isinstance(result, types.TransientError) and result.code == "InvalidResponse"


def test_entity_expansion_bomb_is_refused():
    lol = '<!DOCTYPE l [<!ENTITY a "aaaaaaaaaa">' + "".join(
        f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">' for i in range(9)) + "]>"
    body = listing_xml([_contents("&j;")], declaration='<?xml version="1.0"?>' + lol, url_encoded=False).encode()
    with ScriptedHttpServer(_answer_with(body)) as server:
        result = _list(server)
    assert isinstance(result, types.TransientError) and result.code == "InvalidResponse"


def test_keys_outside_the_prefix_are_refused():
    body = listing_xml([_contents("other/file")], ["elsewhere/"]).encode()
    with ScriptedHttpServer(_answer_with(body)) as server:
        result = _list(server, prefix="mine/")
    assert isinstance(result, types.TransientError) and result.code == "InvalidResponse"
    assert "outside the prefix" in str(result)


def test_a_listing_that_does_not_advance_ends():
    """A server repeating the same continuation token forever: list_all stops with InvalidResponse."""
    body = listing_xml([_contents("a")], truncated="true", token="same").encode()
    with ScriptedHttpServer(_answer_with(body)) as server:
        result = _list(server, whole=True)
        assert isinstance(result, types.TransientError) and result.code == "InvalidResponse"
        assert len(server.requests) == 2


def test_an_invalid_listing_is_retried_then_eio():
    """InvalidResponse is transient: retried per the policy, then the mount's errno is EIO."""
    import errno

    answers = iter([b"<ListBucketResult><IsTrunc", listing_xml([_contents("ok")]).encode()])

    def answer(request):
        return http_response(200, next(answers), {"Content-Type": "application/xml"})

    async def run(server):
        store = ObjectStore.create(endpoint=server.endpoint, bucket="bkt", credentials=Credentials("AK", SECRET),
                                   retry=RetryPolicy(max_attempts=2, base_delay=0.01))
        return await store.list_page("")

    with ScriptedHttpServer(answer) as server:
        page = trio.run(run, server)
    assert [o.key for o in page.objects] == ["ok"]
    assert types.TransientError("x", code="InvalidResponse").errno == errno.EIO


# -- keys of every byte, length and component shape -----------------------------------------------------------------

_key_bytes = st.one_of(
    st.binary(min_size=1, max_size=1023),
    st.lists(st.sampled_from([b"", b".", b"..", b"a", b"\x00", b"\xff", b"\xe0\x80", b" ", b"%", b"\xef\xbf\xbd",
                              "\ue000".encode(), "\ue02f".encode(), "\ue02e\ue02e".encode(), "\ue0e9".encode(),
                              "é".encode(), b"x" * 255, b"y" * 256]),
             min_size=1, max_size=8).map(b"/".join).filter(lambda k: 0 < len(k) <= 1023),
    st.integers(1, 1023).map(lambda n: b"k" * n),
)


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(dir_prefix=st.sampled_from(["", "d/", "a b/caf\u00e9/"]), keys=st.lists(_key_bytes, min_size=1, max_size=6))
def test_fuzz_listed_keys(scripted, dir_prefix, keys):
    """Keys of any bytes (every value 0..255, invalid UTF-8 too), any length up to 1,023 and any component shape
    ('', '.', '..', '//', trailing '/', over NAME_MAX) as OSS sends them (url-encoded), listed under a directory:
    each arrives as a str key, and the directory shows (fs.names.split_listing, what readdir uses) only valid,
    distinct names the kernel can take, with or without use_wtf8, and names a reason for every key it hides."""
    full = [dir_prefix.encode() + key for key in keys]
    full = [key for key in full if len(key) <= 1023]
    assume(full)
    wire = [urllib.parse.quote_from_bytes(key, safe="") for key in full]
    common = sorted({dir_prefix + key[len(dir_prefix.encode()):].decode("utf-8", "replace").partition("/")[0] + "/"
                     for key in full if b"/" in key[len(dir_prefix.encode()):]})
    body = listing_xml([_contents(k) for k in wire], [urllib.parse.quote(p, safe="") for p in common]).encode()
    result = _list(_serving(scripted, _answer_with(body)), prefix=dir_prefix)
    assert isinstance(result, types.ListPage), result
    assert len(result.objects) == len(full)
    for info, raw in zip(result.objects, full):
        try:
            assert info.key.encode("utf-8") == raw  # valid UTF-8 arrives exactly
        except AssertionError:
            assert "\ufffd" in info.key  # OSS keys are UTF-8; other bytes can only be shown replaced
    listing = split_listing(dir_prefix, [(o.key, o) for o in result.objects], result.prefixes)
    assert not set(listing.files) & listing.dirs
    for name in listing.names:
        assert unshowable_reason(name) is None and "/" not in name and name not in ("", ".", "..")
        assert 0 < len(os.fsencode(name)) <= NAME_MAX and b"\0" not in os.fsencode(name)
        for shown in (wtf8.name_to_kernel(name), os.fsencode(name)):  # with and without use_wtf8
            assert shown and b"/" not in shown and b"\0" not in shown and shown not in (b".", b"..")
    hidden = {key for key, reason in listing.hidden if reason}
    for info in result.objects:
        if info.key == dir_prefix:
            continue  # the directory's own marker
        first, slash, _ = info.key[len(dir_prefix):].partition("/")
        assert first in listing.names or info.key in hidden or (dir_prefix + first + "/") in hidden, info.key


@FUZZ
@given(st.binary(min_size=1, max_size=255).filter(lambda n: b"/" not in n and b"\0" not in n))
def test_fuzz_wtf8_names_round_trip(raw):
    """use_wtf8: any name the kernel gives becomes a valid UTF-8 key component and is shown with its bytes (except
    names that really hold U+E080..U+E0FF, shown as the bytes those stand for, as s3fs does)."""
    assume(not any(0xE080 <= ord(c) <= 0xE0FF for c in raw.decode("utf-8", "ignore")))
    component = wtf8.name_from_kernel(raw)
    component.encode("utf-8")  # valid: OSS would take it
    assert wtf8.name_to_kernel(component) == raw


def test_regression_wtf8_private_use_code_points_below_0x80_stay_themselves():
    """Found by test_fuzz_listed_keys: with use_wtf8, a key holding U+E000 or U+E02F was shown with a NUL or a '/'
    in its name (s3fs's decoding turns all of U+E000..U+E0FF into bytes), which the kernel refuses."""
    assert wtf8.name_to_kernel("a\ue02fb") == "a\ue02fb".encode()
    assert wtf8.name_to_kernel("\ue000") == "\ue000".encode()
    assert wtf8.name_to_kernel(wtf8.name_from_kernel(b"caf\xe9")) == b"caf\xe9"  # what the encoding makes
    assert wtf8.name_from_kernel("\ue02f".encode()) == "\ue02f"


def test_server_credentials_file_with_a_byte_order_mark(tmp_path):
    """`ossmount serve --credentials FILE` reads the file as the client reads its passwd file."""
    from ossmount.server.core.auth import CredentialStore

    path = tmp_path / "credentials"
    path.write_bytes(codecs.BOM_UTF8 + b"AK:" + SECRET.encode() + b"\r\n")
    assert CredentialStore.from_file(str(path)).first().access_key_id == "AK"
