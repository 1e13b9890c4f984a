"""`ossmount diagnose [MOUNTPOINT...] [-o url=... BUCKET[:/PREFIX]] [--output FILE.tar.gz]`: one archive with
what support asks for, and a summary of the problems found, in plain words.

Without MOUNTPOINT every fuse.ossmount mount of the host is examined. The archive (mode 0600) holds, under one
directory:
  summary.txt           the problems found (dead mount, ENOTCONN, hung mount, failed uploads kept in the spool,
                        clock skew against the server's Date header, credentials expiring soon, updatedb not
                        pruning fuse.ossmount, checks that fail), then what was examined
  versions.txt          ossmount, Python, pyfuse3, libfuse (fusermount3 -V), kernel, OS
  mountinfo.txt         the fuse.ossmount lines of /proc/self/mountinfo
  kernel.txt            kernel messages about FUSE and ossmount (dmesg), if readable
  updatedb.txt          the PRUNEFS line of /etc/updatedb.conf
  mount-N/              per mount: mount.json (mountinfo entry, liveness probe, fusectl waiting requests, the
                        record with the effective options), status.json, stats.json (`ossmount stats --json`),
                        log-tail.txt (its log file, or its syslog lines from journald or /var/log/syslog),
                        check.txt (`ossmount check` of its bucket), clock.txt, conflicts.txt
  bucket-N/             per `-o url=... BUCKET`: check.txt, clock.txt

Never hangs: nothing is read through a mountpoint; every probe (statvfs, the control socket, subprocesses,
HTTP) runs in a daemon thread or subprocess with its own timeout, and the whole collection stops at
`DEADLINE` seconds. Secrets never reach the archive: every file is passed through `logsafety.redact`
(signatures, security tokens) and every secret this host's credentials hold (the mounts' passwd files and
credential directories, the environment) is replaced by `<redacted>`.
"""

from __future__ import annotations

import argparse
import datetime
import email.utils
import io
import json
import os
import platform
import socket
import subprocess
import sys
import tarfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ossmount import __version__, mounttable
from ossmount.errors import EXIT_OK, ArgumentParser, ConfigError, UsageError
from ossmount.logsafety import REDACTED, redact
from ossmount.ops import control, updatedb

DEADLINE = 25.0  # seconds for the whole collection (the command ends within 30 s)
PROBE_TIMEOUT = 3.0
CHECK_TIMEOUT = 15.0
LOG_TAIL_LINES = 300
LOG_TAIL_BYTES = 256 * 1024
SKEW_WARNING = 60.0  # seconds of clock difference worth a line
SKEW_REFUSED = 15 * 60.0  # OSS refuses requests (RequestTimeTooSkewed) beyond 15 minutes
EXPIRY_WARNING = 15 * 60.0  # credentials expiring within this many seconds
SECRET_ENV = ("OSS_ACCESS_KEY_SECRET", "OSS_SESSION_TOKEN", "OSSSECRETACCESSKEY", "OSSSESSIONTOKEN",
              "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
CHECK_OPTIONS = ("url", "passwd_file", "ram_role", "public_bucket", "sigv4", "region", "servicepath",
                 "path_style", "no_check_certificate", "ssl_verify_hostname", "requester_pays", "list_objects_v2")


def bounded(fn: Callable[[], Any], timeout: float, default: Any) -> Any:
    """`fn()` in a daemon thread; `default` if it raises or has not returned after `timeout` seconds (a hung
    FUSE mount can hang any call that touches it; a daemon thread never keeps the process alive)."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(fn())
        except Exception as exc:  # noqa: BLE001 - a probe's failure is a finding, not a crash
            outcome.append(exc if default is None else default)

    thread = threading.Thread(target=run, name="ossmount-diagnose", daemon=True)
    thread.start()
    thread.join(max(timeout, 0.0))
    return outcome[0] if outcome else default


def run_command(argv: list[str], timeout: float) -> tuple[int | None, str]:
    """(exit code or None on timeout/missing, stdout+stderr) of a command."""
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        return None, f"{argv[0]}: not installed"
    except subprocess.TimeoutExpired:
        return None, f"{' '.join(argv)}: no answer within {timeout:g} s"
    return result.returncode, (result.stdout + result.stderr)


# -- secrets ----------------------------------------------------------------------------------------------


class Secrets:
    """Every secret value this host's credentials hold, to replace in the archive."""

    def __init__(self) -> None:
        self.values: set[str] = set()

    def add(self, value: str | None) -> None:
        if value and len(value.strip()) >= 6:
            self.values.add(value.strip())

    def from_environment(self, environ: dict[str, str]) -> None:
        for name in SECRET_ENV:
            self.add(environ.get(name))

    def from_passwd(self, path: str | None) -> None:
        """A passwd file (BUCKET:AK:SK, AK:SK[:TOKEN] lines) or a credentials directory."""
        if not path:
            return
        try:
            if os.path.isdir(path):
                for name in ("AccessKeySecret", "SecurityToken", "akSecret", "securityToken"):
                    candidate = os.path.join(path, name)
                    if os.path.isfile(candidate):
                        self.add(Path(candidate).read_text(errors="replace"))
                return
            for line in Path(path).read_text(errors="replace").splitlines():
                fields = line.strip().split(":")
                if len(fields) >= 2 and not line.lstrip().startswith("#"):
                    for value in fields[1:]:
                        self.add(value)
        except OSError:
            pass

    def scrub(self, text: str) -> str:
        text = redact(text)
        for value in sorted(self.values, key=len, reverse=True):
            text = text.replace(value, REDACTED)
        return text


# -- findings ---------------------------------------------------------------------------------------------


@dataclass
class MountFacts:
    """What was learned about one mount (the input of `problems`)."""

    mountpoint: str
    entry: dict | None = None
    probe: str = "not probed"
    record: dict | None = None
    pid_alive: bool | None = None
    stats: dict | None = None
    stats_error: str | None = None
    status: dict | None = None
    waiting: int | None = None
    check: tuple[int | None, str] | None = None
    skew: float | None = None
    skew_error: str | None = None
    conflicts: list[str] = field(default_factory=list)


def problems(mounts: list[MountFacts], *, updatedb_state: bool | None, now: float,
             buckets: list[tuple[str, tuple[int | None, str] | None, float | None]] = ()) -> list[str]:
    """The problems in plain words, most serious first (sans-IO)."""
    found: list[str] = []
    for facts in mounts:
        where = facts.mountpoint
        pid = facts.record.get("pid") if facts.record else None
        if facts.probe == "ENOTCONN":
            found.append(f"{where} is a dead mount (ENOTCONN, 'Transport endpoint is not connected'): its ossmount "
                         f"process{f' (pid {pid})' if pid else ''} is gone, and every access fails. Unmount it "
                         f"(fusermount3 -u {where}, or umount -l {where}) and mount again; a file being written "
                         "when it died was not uploaded.")
        elif facts.probe == "timeout":
            found.append(f"{where} does not answer (statfs took longer than {PROBE_TIMEOUT:g} s"
                         + (f"; {facts.waiting} requests wait in the kernel" if facts.waiting else "")
                         + f"): the ossmount process{f' (pid {pid})' if pid else ''} is hung or overloaded. "
                         f"Its log tail is in this archive; umount -l {where} detaches it.")
        elif facts.probe not in ("ok", "not probed"):
            found.append(f"{where}: statfs fails with {facts.probe}.")
        if facts.record is None and facts.probe == "ok":
            found.append(f"{where} is an ossmount mount but no ossmount process left a record of it (started by an "
                         "older ossmount, or its runtime directory was removed): no stats or log location.")
        elif facts.record is not None and facts.pid_alive is False and facts.probe != "ENOTCONN":
            found.append(f"{where}: its ossmount process (pid {pid}) is gone.")
        if facts.stats_error and facts.probe == "ok":
            found.append(f"{where}: its statistics could not be read: {facts.stats_error}")
        stats = facts.stats or {}
        failed = [f for f in stats.get("dirty_files", []) if f.get("state") == "failed"]
        if failed:
            names = "; ".join(f"{f['path']} ({f.get('error_code')}, {f.get('dirty_bytes')} bytes)" for f in failed[:5])
            found.append(f"{where}: {len(failed)} file(s) could not be uploaded and are kept in the mount's spool "
                         f"(retried at the next close, fsync or unmount; lost if the process is killed): {names}.")
        backend = stats.get("backend") or (facts.status or {}).get("backend") or {}
        if backend.get("ok") is False:
            error = backend.get("last_error") or {}
            found.append(f"{where}: OSS refuses this mount's requests ({error.get('code')}): see check.txt.")
        credentials = stats.get("credentials") or (facts.status or {}).get("credentials") or {}
        expiration = _epoch(credentials.get("expiration"))
        if expiration is not None and expiration - now < EXPIRY_WARNING:
            state = "expired" if expiration <= now else f"expire in {int((expiration - now) // 60)} minutes"
            found.append(f"{where}: its STS credentials ({credentials.get('access_key_id')}) {state} "
                         f"({credentials.get('expiration')}); reload errors: {credentials.get('reload_error')}.")
        found += _skew_problem(where, facts.skew)
        if facts.check is not None and facts.check[0] not in (0, None):
            found.append(f"{where}: `ossmount check` of its bucket fails: {_last_line(facts.check[1])}")
        if facts.conflicts:
            found.append(f"{where}: {len(facts.conflicts)} writer's copies were kept aside after conflicting "
                         f"changes by another client (see conflicts.txt).")
    for spec, check, skew in buckets:
        if check is not None and check[0] not in (0, None):
            found.append(f"{spec}: `ossmount check` fails: {_last_line(check[1])}")
        found += _skew_problem(spec, skew)
    if updatedb_state is False:
        found.append(f"{updatedb.UPDATEDB_CONF} does not prune fuse.ossmount: locate's nightly updatedb walks every "
                     "mount (a LIST per directory, a HEAD per file, all billed). Run: ossmount install-helper "
                     "--prune-updatedb")
    return found


def _skew_problem(where: str, skew: float | None) -> list[str]:
    if skew is None or abs(skew) < SKEW_WARNING:
        return []
    direction = "ahead of" if skew > 0 else "behind"
    consequence = ("OSS refuses every request (RequestTimeTooSkewed)" if abs(skew) >= SKEW_REFUSED
                   else "OSS refuses requests beyond 15 minutes (RequestTimeTooSkewed)")
    return [f"{where}: this host's clock is {abs(skew):.0f} s {direction} the server's: {consequence}; "
            "synchronise it (chrony, systemd-timesyncd)."]


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


def _epoch(value: Any) -> float | None:
    if not value:
        return None
    try:
        return datetime.datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


# -- collecting -------------------------------------------------------------------------------------------


def clock_skew(url: str, timeout: float = PROBE_TIMEOUT) -> float:
    """Local time minus the server's (its Date header, of any answer to HEAD /), in seconds."""
    request = urllib.request.Request(url.rstrip("/") + "/", method="HEAD")
    started = time.time()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310 - the mount's own endpoint
            date = answer.headers.get("Date")
    except urllib.error.HTTPError as answer:
        date = answer.headers.get("Date")
    finished = time.time()
    if not date:
        raise ValueError(f"{url} sent no Date header")
    server = email.utils.parsedate_to_datetime(date).timestamp()
    return (started + finished) / 2 - server - 0.5  # Date has whole seconds: compare with the middle


def check_command(spec: str, options: dict[str, Any]) -> list[str]:
    """`ossmount check SPEC -o ...` with the options of a mount that decide how it reaches OSS."""
    items = [f"url={options['url']}"] if options.get("url") else []
    for name in ("passwd_file", "ram_role", "region", "servicepath"):
        if options.get(name):
            items.append(f"{name}={options[name]}")
    for name, option in (("sigv4", "sigv4"), ("path_style", "use_path_request_style"),
                         ("no_check_certificate", "no_check_certificate"), ("requester_pays", "requester_pays")):
        if options.get(name) is True:
            items.append(option)
    if options.get("public_bucket") is True:
        items.append("public_bucket=1")
    if options.get("ssl_verify_hostname") == "0":
        items.append("ssl_verify_hostname=0")
    if options.get("list_objects_v2") is False:
        items.append("listobjectsv1")
    return [sys.executable, "-m", "ossmount", "check", spec, "-o", ",".join(items)]


def tail_file(path: str, lines: int = LOG_TAIL_LINES) -> str:
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        handle.seek(max(0, size - LOG_TAIL_BYTES))
        text = handle.read().decode("utf-8", "replace")
    return "\n".join(text.splitlines()[-lines:])


def syslog_tail(pid: int | None) -> str:
    """The mount's syslog lines: journald (SYSLOG_IDENTIFIER=ossmount, its pid), else /var/log/syslog."""
    if pid is not None:
        code, output = run_command(["journalctl", "--no-pager", "-q", "-n", str(LOG_TAIL_LINES),
                                    "SYSLOG_IDENTIFIER=ossmount", f"SYSLOG_PID={pid}"], timeout=8)
        if code == 0 and output.strip():
            return output
    marker = f"ossmount[{pid}]" if pid is not None else "ossmount["
    for path in ("/var/log/syslog", "/var/log/messages", "/var/log/user.log"):
        try:
            found = [line for line in tail_file(path, 20000).splitlines() if marker in line]
        except OSError:
            continue
        return "\n".join(found[-LOG_TAIL_LINES:]) or f"(no {marker} lines in {path})"
    return "(no journald answer and no /var/log/syslog)"


def examine_mount(entry: Any, records: dict[str, dict], secrets: Secrets) -> tuple[MountFacts, dict[str, str]]:
    """Collect what the archive holds of one mount (every step bounded); returns (facts, files)."""
    from ossmount.daemon import system

    facts = MountFacts(entry.mount_point)
    facts.entry = {"mount_id": entry.mount_id, "dev": entry.dev, "source": entry.source, "fstype": entry.fstype,
                   "options": list(entry.options), "mountpoint": entry.mount_point}
    facts.probe = mounttable.probe(entry.mount_point, timeout=PROBE_TIMEOUT)
    facts.waiting = bounded(lambda: system.fuse_waiting_requests(entry.dev), PROBE_TIMEOUT, None)
    if isinstance(facts.waiting, Exception):
        facts.waiting = None
    facts.record = records.get(entry.mount_point)
    files: dict[str, str] = {}
    if facts.record is not None:
        facts.pid_alive = mounttable.pid_alive(int(facts.record["pid"]))
        options = facts.record.get("options") or {}
        secrets.from_passwd(options.get("passwd_file"))
        status_file = facts.record.get("status_file")
        if status_file:
            status = bounded(lambda: json.loads(Path(status_file).read_text()), PROBE_TIMEOUT, None)
            if isinstance(status, dict):
                facts.status = status
                files["status.json"] = json.dumps(status, indent=1, sort_keys=True)
        socket_path = facts.record.get("control_socket")
        if socket_path and facts.pid_alive and facts.probe != "ENOTCONN":
            answer = bounded(lambda: control.request(socket_path, {"op": "stats"}, timeout=PROBE_TIMEOUT),
                             PROBE_TIMEOUT + 1, None)
            if isinstance(answer, dict):
                facts.stats = answer
                files["stats.json"] = json.dumps(answer, indent=1, sort_keys=True)
            else:
                facts.stats_error = str(answer) if answer is not None else "no answer"
        files["log-tail.txt"] = _log_tail(facts.record)
        url = options.get("url") or facts.record.get("url")
        spec = f"{facts.record.get('bucket')}:/{facts.record.get('prefix') or ''}".rstrip("/").rstrip(":")
        if url:
            skew = bounded(lambda: clock_skew(url), PROBE_TIMEOUT + 1, None)
            if isinstance(skew, float):
                facts.skew = skew
            else:
                facts.skew_error = str(skew) if skew is not None else "no answer"
            files["clock.txt"] = _clock_text(url, facts.skew, facts.skew_error)
            command = check_command(spec, {**options, "url": url})
            facts.check = bounded(lambda: run_command(command, CHECK_TIMEOUT), CHECK_TIMEOUT + 1,
                                  (None, "no answer"))
            files["check.txt"] = f"$ {' '.join(command[2:])}\nexit {facts.check[0]}\n{facts.check[1]}"
        facts.conflicts = _conflicts(options.get("tmpdir"))
        if facts.conflicts:
            files["conflicts.txt"] = "\n".join(facts.conflicts)
    files["mount.json"] = json.dumps({"mountinfo": facts.entry, "statfs": facts.probe,
                                      "fusectl_waiting": facts.waiting, "record": facts.record,
                                      "process_alive": facts.pid_alive}, indent=1, sort_keys=True)
    return facts, files


def _log_tail(record: dict) -> str:
    log = record.get("log") or {}
    if log.get("target") == "file" and log.get("path"):
        path = log["path"]
        text = bounded(lambda: tail_file(path), PROBE_TIMEOUT, None)
        return f"# {path}\n{text}" if isinstance(text, str) else f"# {path}: not readable ({text})"
    if log.get("target") == "syslog":
        return bounded(lambda: syslog_tail(record.get("pid")), 10, "(syslog not readable in time)")
    return f"# the mount logged to {log.get('target', 'an unknown place')}: no log to collect"


def _clock_text(url: str, skew: float | None, error: str | None) -> str:
    if skew is None:
        return f"{url}: no Date header to compare with ({error})"
    return f"{url}: local clock minus the server's Date: {skew:+.1f} s"


def _conflicts(tmpdir: str | None) -> list[str]:
    from ossmount.fs.content import DEFAULT_CONFLICT_DIR, conflict_dir_for

    found = []
    for directory in dict.fromkeys([DEFAULT_CONFLICT_DIR, conflict_dir_for(tmpdir)]):
        try:
            names = sorted(os.listdir(directory))
        except OSError:
            continue
        found += [os.path.join(directory, name) for name in names if not name.endswith(".json")]
    return found


def versions() -> str:
    import importlib.metadata

    import pyfuse3
    import trio

    _, fusermount = run_command(["fusermount3", "-V"], timeout=5)
    release = ""
    try:
        release = next((line.split("=", 1)[1].strip('"') for line in Path("/etc/os-release").read_text().splitlines()
                        if line.startswith("PRETTY_NAME=")), "")
    except OSError:
        pass
    return "\n".join([
        f"ossmount {__version__}", f"Python {sys.version.split()[0]} ({sys.executable})",
        f"pyfuse3 {getattr(pyfuse3, '__version__', '?')}", f"libfuse: {fusermount.strip()}",
        f"trio {trio.__version__}", f"oss2 {importlib.metadata.version('oss2')}",
        f"kernel {platform.release()} ({platform.machine()})", f"OS {release}", f"host {socket.gethostname()}",
        f"time {datetime.datetime.now(datetime.timezone.utc).isoformat()}", ""])


def kernel_messages() -> str:
    code, output = run_command(["dmesg", "--ctime"], timeout=5)
    if code != 0:
        return f"dmesg not readable: {output.strip()[:200]}"
    lines = [line for line in output.splitlines() if "fuse" in line.lower() or "ossmount" in line.lower()]
    return "\n".join(lines[-200:]) or "(no kernel messages about FUSE or ossmount)"


# -- the command ------------------------------------------------------------------------------------------


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = ArgumentParser(
        prog="ossmount diagnose",
        description="Collect versions, mounts, options, statistics, log tails, kernel messages and connectivity "
                    "checks into one archive without secrets, with a summary of the problems found.")
    parser.add_argument("targets", nargs="*", metavar="MOUNTPOINT|BUCKET",
                        help="mountpoints to examine (default: every ossmount mount); with -o url=, a "
                             "BUCKET[:/PREFIX] to check without a mount")
    parser.add_argument("-o", dest="options", action="append", default=[], metavar="OPT[,OPT...]",
                        help="mount options for the BUCKET checks (url=, passwd_file=, ...)")
    parser.add_argument("--output", help="the archive to write (default ./ossmount-diagnose-HOST-TIME.tar.gz)")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    from ossmount.daemon.mountinfo import MountTable
    from ossmount.options import parse_bucket_spec, parse_options, split_option_string

    args = _parse(argv)
    started = time.monotonic()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    output = args.output or f"ossmount-diagnose-{socket.gethostname()}-{stamp}.tar.gz"
    try:
        table = MountTable.read()
    except OSError as exc:
        raise ConfigError(f"cannot read the mount table: {exc.strerror}") from None
    mounted = {e.mount_point: e for e in table.entries if e.is_ossmount}
    mount_targets, bucket_targets = [], []
    for target in args.targets:
        resolved = mounttable.resolve(target)
        if resolved in mounted:
            mount_targets.append(mounted[resolved])
        elif "/" in target and not args.options:
            raise UsageError(f"{target} is no ossmount mount (not in /proc/self/mountinfo)")
        else:
            bucket_targets.append(target)
    if bucket_targets and not args.options:
        raise UsageError("checking a BUCKET needs its endpoint: -o url=...")
    options = parse_options([item for text in args.options for item in split_option_string(text)])
    for spec in bucket_targets:
        parse_bucket_spec(spec)
    if not args.targets:
        mount_targets = list(mounted.values())
    secrets = Secrets()
    secrets.from_environment(dict(os.environ))
    secrets.from_passwd(options.passwd_file)
    records = {str(r.get("mountpoint")): r for r in control.all_records()}
    files: dict[str, str] = {}
    results: list[Any] = [None] * len(mount_targets)

    def examine(index: int, entry: Any) -> None:
        results[index] = examine_mount(entry, records, secrets)

    threads = [threading.Thread(target=examine, args=(i, e), daemon=True) for i, e in enumerate(mount_targets)]
    for thread in threads:
        thread.start()
    buckets = []
    for number, spec in enumerate(bucket_targets, start=1):
        document = {name: getattr(options, name) for name in CHECK_OPTIONS}
        command = check_command(spec, document)
        check = bounded(lambda: run_command(command, CHECK_TIMEOUT), CHECK_TIMEOUT + 1, (None, "no answer"))
        skew = bounded(lambda: clock_skew(options.url), PROBE_TIMEOUT + 1, None)
        skew = skew if isinstance(skew, float) else None
        files[f"bucket-{number}/check.txt"] = f"$ {' '.join(command[2:])}\nexit {check[0]}\n{check[1]}"
        files[f"bucket-{number}/clock.txt"] = _clock_text(options.url, skew, None if skew is not None else "no answer")
        buckets.append((spec, check, skew))
    files["versions.txt"] = bounded(versions, 8, "versions not collected in time")
    files["kernel.txt"] = bounded(kernel_messages, 8, "dmesg did not answer in time")
    updatedb_state = updatedb.updatedb_prunes()
    prunefs = bounded(lambda: updatedb.pruned_types(Path(updatedb.UPDATEDB_CONF).read_text()), 2, None)
    files["updatedb.txt"] = (f"{updatedb.UPDATEDB_CONF}: PRUNEFS={' '.join(prunefs)}" if isinstance(prunefs, list)
                             else f"{updatedb.UPDATEDB_CONF}: no PRUNEFS line" if updatedb_state is False
                             else f"{updatedb.UPDATEDB_CONF}: not present (locate is not installed)")
    files["mountinfo.txt"] = _mountinfo_lines()
    deadline = started + DEADLINE
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    facts_list = []
    for index, entry in enumerate(mount_targets, start=1):
        result = results[index - 1]
        if result is None:
            facts = MountFacts(entry.mount_point, probe="timeout")
            files[f"mount-{index}/mount.json"] = json.dumps({"mountpoint": entry.mount_point,
                                                             "note": "not examined within the deadline"})
        else:
            facts, mount_files = result
            for name, text in mount_files.items():
                files[f"mount-{index}/{name}"] = text
        facts_list.append(facts)
    found = problems(facts_list, updatedb_state=updatedb_state, now=time.time(), buckets=buckets)
    summary = _summary(found, mount_targets, bucket_targets)
    files = {"summary.txt": summary, **files}
    try:
        _write_archive(output, f"ossmount-diagnose-{stamp}", {n: secrets.scrub(t) for n, t in files.items()})
    except OSError as exc:
        raise ConfigError(f"cannot write the archive {output}: {exc.strerror or exc}") from None
    print(secrets.scrub(summary))
    print(f"archive: {os.path.abspath(output)}")
    return EXIT_OK


def _mountinfo_lines() -> str:
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as handle:
            lines = [line.rstrip("\n") for line in handle if " - fuse.ossmount " in line or "fusectl" in line]
    except OSError as exc:
        return f"mountinfo not readable: {exc}"
    return "\n".join(lines) or "(no fuse.ossmount mounts)"


def _summary(found: list[str], mounts: list[Any], buckets: list[str]) -> str:
    lines = [f"ossmount diagnose {__version__} on {socket.gethostname()}, "
             f"{datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')}", ""]
    if found:
        lines.append(f"{len(found)} problem(s) found:")
        lines += [f"  - {line}" for line in found]
    else:
        lines.append("No problem found.")
    lines += ["", "Examined: " + (", ".join(e.mount_point for e in mounts) or "no ossmount mount")
              + ("; buckets: " + ", ".join(buckets) if buckets else ""), ""]
    return "\n".join(lines)


def _write_archive(path: str, top: str, files: dict[str, str]) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as handle, tarfile.open(fileobj=handle, mode="w:gz") as archive:
        now = time.time()
        for name, text in files.items():
            data = text.encode("utf-8", "replace")
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size, info.mtime, info.mode = len(data), now, 0o600
            archive.addfile(info, io.BytesIO(data))
