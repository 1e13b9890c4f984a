"""Run oss2's own integration tests (from its PyPI sdist) against `ossmount serve` (oss-api.md §4).

    python -m tests.compat.harness --auth v1 [--auth v4] [-k EXPR] [FILE ...]

obtains the oss2 sdist at the installed (pinned) version into tests/compat/_sdist/ (gitignored), starts a
LocalServer, points the suite at it through OSS_TEST_* variables and runs the allow-listed files with pytest in a
subprocess, deselecting tests/compat/skips.py (by exact node id, see ossmount_compat_plugin.py). Results come
from the subprocess's JUnit XML. The pytest entry point is tests/compat/test_oss2_suite.py; this module is also
runnable by hand to triage failures.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from ossmount.testing import LocalServer, die_with_parent

COMPAT_DIR = Path(__file__).resolve().parent
SDIST_CACHE = COMPAT_DIR / "_sdist"
OSS2_VERSION = importlib.metadata.version("oss2")
SUITE_TIMEOUT = 900.0  # seconds for one auth version's whole run; a hang is reported, not waited out
BUCKET_PREFIX = "oss2-compat-"
# Real OSS takes minutes to restore an Archive object and oss2's listing tests assert ongoing-request="true"
# right after RestoreObject; no test in the allow-list waits for a restore to finish.
SERVER_ARGS = ("--restore-delay", "60")

_INI_NAME = "ossmount-compat.ini"


class SdistError(RuntimeError):
    """The oss2 sdist could not be downloaded or unpacked."""


def obtain_sdist(cache: Path = SDIST_CACHE, version: str = OSS2_VERSION) -> Path:
    """The unpacked oss2 sdist (downloaded with pip once, then reused), with the fixtures the sdist lacks."""
    root = cache / f"oss2-{version}"
    if not (root / "tests" / "common.py").exists():
        cache.mkdir(parents=True, exist_ok=True)
        tarball = cache / f"oss2-{version}.tar.gz"
        if not tarball.exists():
            _download(cache, version)
        _unpack(tarball, root)
    _write_missing_fixtures(root)
    return root


def _download(cache: Path, version: str) -> None:
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
               f"oss2=={version}", "-d", str(cache)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    if result.returncode != 0:
        raise SdistError(f"pip download of oss2=={version} failed:\n{result.stderr[-2000:]}")


def _unpack(tarball: Path, root: Path) -> None:
    # Unpack beside the target and rename, so a concurrent or interrupted run never sees half a tree.
    staging = Path(tempfile.mkdtemp(prefix="unpack-", dir=root.parent))
    try:
        with tarfile.open(tarball) as archive:
            archive.extractall(staging, filter="data")
        unpacked = staging / root.name
        if not (unpacked / "tests" / "common.py").exists():
            raise SdistError(f"{tarball} does not contain {root.name}/tests/common.py")
        try:
            unpacked.rename(root)
        except OSError:
            if not (root / "tests" / "common.py").exists():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _write_missing_fixtures(root: Path) -> None:
    """The sdist ships only *.py under tests/; a few tests upload tests/example.jpg or tests/sample_data.csv.

    Those tests only store and read the files back (content type from the extension), so synthetic stand-ins
    exercise the same server paths."""
    jpeg = root / "tests" / "example.jpg"
    if not jpeg.exists():
        body = bytes(range(256)) * 64
        jpeg.write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + body + b"\xff\xd9")
    csv = root / "tests" / "sample_data.csv"
    if not csv.exists():
        rows = ["Year,StateAbbr,StateDesc,CityName,GeographicLevel,DataSource,Category,UniqueID,PopulationCount"]
        rows += [f"2015,CA,California,City{i},City,BRFSS,Prevention,{i},{1000 + i}" for i in range(200)]
        csv.write_text("\n".join(rows) + "\n")


@dataclass
class TestOutcome:
    node_id: str
    outcome: str  # passed / failed / error / skipped
    message: str = ""
    seconds: float = 0.0


@dataclass
class SuiteResult:
    """What one run of the oss2 suite did, parsed from its JUnit XML."""

    auth_version: str
    outcomes: list[TestOutcome] = field(default_factory=list)
    deselected: int = 0
    returncode: int | None = None
    seconds: float = 0.0
    timed_out: bool = False
    output_tail: str = ""

    def count(self, outcome: str) -> int:
        return sum(1 for item in self.outcomes if item.outcome == outcome)

    @property
    def passed(self) -> int:
        return self.count("passed")

    @property
    def applicable(self) -> int:
        """Tests that ran to a verdict: passed, failed or errored (deselected and runtime skips excluded)."""
        return self.passed + self.count("failed") + self.count("error")

    @property
    def pass_ratio(self) -> float:
        return self.passed / self.applicable if self.applicable else 0.0

    def summary(self) -> str:
        return (f"oss2 {OSS2_VERSION} suite, auth {self.auth_version}: {self.passed}/{self.applicable} passed "
                f"({self.pass_ratio:.1%}), {self.count('failed')} failed, {self.count('error')} errors, "
                f"{self.count('skipped')} skipped at runtime, {self.deselected} deselected by skips.py, "
                f"{self.seconds:.0f} s" + (" [TIMED OUT]" if self.timed_out else ""))

    def report(self) -> str:
        lines = [self.summary()]
        for item in self.outcomes:
            if item.outcome in ("failed", "error"):
                lines.append(f"  {item.outcome.upper()} {item.node_id}: {item.message[:300]}")
        if self.timed_out or not self.outcomes:
            lines.append("  --- subprocess output (tail) ---")
            lines.append(self.output_tail)
        return "\n".join(lines)


def parse_junit(path: Path) -> list[TestOutcome]:
    """Per-test outcomes from a pytest JUnit XML file (classname 'tests.test_x.TestY' → node id)."""
    outcomes = []
    for case in ET.parse(path).getroot().iter("testcase"):
        classname = case.get("classname", "")
        module, _, cls = classname.rpartition(".")
        node_id = f"{module.replace('.', '/')}.py::{cls}::{case.get('name')}"
        outcome, message = "passed", ""
        for tag in ("failure", "error", "skipped"):
            element = case.find(tag)
            if element is not None:
                outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[tag]
                message = (element.get("message") or element.text or "").strip().replace("\n", " ")
                break
        outcomes.append(TestOutcome(node_id, outcome, message, float(case.get("time") or 0.0)))
    return outcomes


def suite_environment(server: LocalServer, auth_version: str) -> dict[str, str]:
    """The OSS_TEST_* configuration oss2's tests/common.py reads."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("OSS_TEST_")}
    env.update(
        OSS_TEST_ACCESS_KEY_ID=server.access_key_id,
        OSS_TEST_ACCESS_KEY_SECRET=server.access_key_secret,
        OSS_TEST_ENDPOINT=server.endpoint,
        OSS_TEST_BUCKET=BUCKET_PREFIX,
        OSS_TEST_REGION=server.region,
    )
    if auth_version != "v1":
        env["OSS_TEST_AUTH_VERSION"] = auth_version
    env.pop("TRAVIS", None)  # it would make wait_meta_sync sleep 5 s
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(COMPAT_DIR), env.get("PYTHONPATH")]))
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def _private_home(work_dir: Path) -> str:
    # resumable upload/download checkpoints go to ~/.py-oss-upload and ~/.py-oss-download; keep them in the run.
    home = work_dir / "home"
    home.mkdir(parents=True, exist_ok=True)
    return str(home)


def run_suite(
    sdist: Path,
    server: LocalServer,
    auth_version: str,
    *,
    work_dir: Path,
    files: tuple[str, ...] | None = None,
    skips: dict[str, str] | None = None,
    keyword: str | None = None,
    timeout: float = SUITE_TIMEOUT,
) -> SuiteResult:
    """Run the allow-listed oss2 test files against `server` and collect per-test outcomes."""
    from tests.compat.skips import ALLOWED_FILES, SKIPS

    files = ALLOWED_FILES if files is None else files
    skips = SKIPS if skips is None else skips
    selected_skips = [node for node in skips if node.split("::", 1)[0] in files]
    work_dir.mkdir(parents=True, exist_ok=True)
    junit = work_dir / f"oss2-{auth_version}.xml"
    # The suite writes scratch files into its working directory and reads tests/example.jpg relative to it, so it
    # runs in a directory of its own that links to the sdist's tests/ (and imports the installed oss2).
    run_dir = work_dir / f"run-{auth_version}"
    run_dir.mkdir(exist_ok=True)
    if not (run_dir / "tests").exists():
        (run_dir / "tests").symlink_to(sdist / "tests", target_is_directory=True)
    ini = run_dir / _INI_NAME
    ini.write_text("[pytest]\njunit_family = xunit2\n")
    command = [
        sys.executable, "-m", "pytest",
        "-c", str(ini), "--rootdir", str(run_dir), "--confcutdir", str(run_dir),
        "-p", "no:cacheprovider", "-p", "ossmount_compat_plugin",
        "-o", "log_level=WARNING", "-q", "-rN", f"--junitxml={junit}",
        *files,
    ]
    if keyword:
        command += ["-k", keyword]
    deselect_file = work_dir / f"oss2-{auth_version}.deselect"
    deselect_file.write_text("".join(node + "\n" for node in selected_skips))
    env = suite_environment(server, auth_version)
    env["OSSMOUNT_COMPAT_DESELECT"] = str(deselect_file)
    env["HOME"] = _private_home(work_dir)
    result = SuiteResult(auth_version, deselected=len(selected_skips))
    started = time.monotonic()
    log_path = work_dir / f"oss2-{auth_version}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, cwd=run_dir, env=env,
                                   stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True, preexec_fn=die_with_parent)
        try:
            result.returncode = process.wait(timeout)
        except subprocess.TimeoutExpired:
            result.timed_out = True
            os.killpg(process.pid, 9)
            process.wait()
    result.seconds = time.monotonic() - started
    result.output_tail = log_path.read_text(errors="replace")[-4000:]
    if junit.exists():
        result.outcomes = parse_junit(junit)
    return result


def run_against_fresh_server(sdist: Path, auth_version: str, work_dir: Path, **kwargs) -> SuiteResult:
    """Start a LocalServer with no buckets (the suite creates its own), run the suite, always stop the server."""
    server = LocalServer(work_dir / f"server-{auth_version}", buckets=(), extra_args=SERVER_ARGS)
    server.start()
    try:
        return run_suite(sdist, server, auth_version, work_dir=work_dir, **kwargs)
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--auth", action="append", choices=["v1", "v4"], help="auth version(s); default both")
    parser.add_argument("-k", dest="keyword", help="pytest -k expression for the oss2 run")
    parser.add_argument("--no-skips", action="store_true", help="also run the tests skips.py deselects")
    parser.add_argument("--work-dir", type=Path, help="keep logs, JUnit XML and server data here")
    parser.add_argument("files", nargs="*", help="oss2 test files (default: the allow-list in skips.py)")
    args = parser.parse_args(argv)
    sdist = obtain_sdist()
    work_dir = args.work_dir or Path(tempfile.mkdtemp(prefix="oss2-compat-"))
    status = 0
    for auth_version in args.auth or ["v1", "v4"]:
        result = run_against_fresh_server(
            sdist, auth_version, work_dir,
            files=tuple(args.files) or None, skips={} if args.no_skips else None, keyword=args.keyword)
        print(result.report(), flush=True)
        if result.pass_ratio < 0.95:
            status = 1
    print(f"logs and JUnit XML in {work_dir}")
    return status


if __name__ == "__main__":
    sys.exit(main())
