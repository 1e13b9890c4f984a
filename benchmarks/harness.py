"""`benchmarks/run`: ossmount, s3fs, rclone and the limits, side by side against one local server (data on tmpfs).

Per client and workload, every figure is the median of `--runs` (≥ 3) runs with min and max; next to it the
requests the server counted (reset per run), the CPU-seconds of the FUSE process tree and its peak RSS (VmHWM,
reset per run). The page cache is dropped before every read job; cold metadata figures (`ls -l`, `stat`, `find`)
run on a fresh mount, and the warm ones (second `ls -l`, second read of the same file) follow a cold one on the
same mount. Results go to benchmarks/results/<date>.json with a
Markdown table and a PNG chart (benchmarks/report.py).
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import http.client
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import report  # noqa: E402
from clients import OssmountClient, RamFsClient, RcloneClient, S3fsClient  # noqa: E402
from procstat import ProcessMeter  # noqa: E402

from ossmount.testing import LocalServer  # noqa: E402

HERE = Path(__file__).resolve().parent
FIO_DIR = HERE / "fio"
BUCKET = "bench"
BIG = "big.bin"
MiB = 1 << 20
FILE_MODE, DIR_MODE = "33188", "16877"  # 0100644, 040755 as ossfs stores them
BUSY_NOTE = ("Measured while other work shared the 2 cores (load average at start {load}), so absolute figures "
             "are noisy; compare ratios within this run.")
IDLE_NOTE = ("Measured with the 2-core machine otherwise idle (load average at start {load}); every client ran "
             "against the same server in the same run, so compare ratios.")


def run_note(load_average: float) -> str:
    """What the run's figures can be trusted for, from the load average when it started."""
    return (IDLE_NOTE if load_average < 1 else BUSY_NOTE).format(load=load_average)


@dataclass(frozen=True)
class Workload:
    name: str
    unit: str  # "MiB/s" (higher is better), "ms" or "s" (lower is better)
    description: str
    kind: str  # "fio", "meta", "pipeline-only" ...

    @property
    def higher_is_better(self) -> bool:
        return self.unit == "MiB/s"


WORKLOADS = [
    Workload("seq_read_1j", "MiB/s", "sequential read of the big object, bs=1M, 1 job (fio/seq_read.fio)", "fio"),
    Workload("seq_read_4j", "MiB/s", "4 jobs reading the same big object, bs=1M (fio/seq_read.fio)", "fio"),
    Workload("reread", "MiB/s", "second read of the same file on the same mount, no cache drop (second epoch)", "fio"),
    Workload("seq_write", "MiB/s", "sequential write of a new big file, bs=1M, through fsync+close and until the "
             "object is on the server (fio/seq_write.fio)", "fio"),
    Workload("close_after_write", "%", "time close() takes after a sequential write of a new big file (1 MiB "
             "writes, no fsync), in % of the time the writes took (lower is better)", "meta"),
    Workload("rand_read_4k", "MiB/s", "random 4 KiB reads in the big object (fio/rand_read.fio)", "fio"),
    Workload("rand_read_256k", "MiB/s", "random 256 KiB reads in the big object (fio/rand_read.fio)", "fio"),
    Workload("ttfb", "ms", "time to first byte: one cold open + 1-byte read of the big object per run (fio/ttfb.fio)",
             "fio"),
    Workload("small_write", "MiB/s", "8 threads write the small files, 64 KiB each (fio/small_files_write.fio)",
             "fio"),
    Workload("small_read", "MiB/s", "8 threads read them back (fio/small_files_read.fio)", "fio"),
    Workload("ls_l_cold", "s", "ls -l of the listing directory on a fresh mount", "meta"),
    Workload("ls_l_warm", "s", "ls -l of the same directory again", "meta"),
    Workload("ls_l_remount", "s", "ls -l of the listing directory after a remount, with what the client keeps on "
             "disk across mounts (ossmount: its persistent stat cache)", "meta"),
    Workload("ls_l_rdo", "s", "ls -l of the listing directory on a fresh mount, ossmount with readdir_optimize "
             "(attributes from the listing; peers as they are)", "meta"),
    Workload("stat", "s", "stat of every path of the listing directory on a fresh mount", "meta"),
    Workload("create_delete", "s", "create then delete empty files, one at a time", "meta"),
    Workload("find", "s", "find over the 3-level tree on a fresh mount", "meta"),
    Workload("find_rdo", "s", "find over the 3-level tree on a fresh mount, ossmount with readdir_optimize", "meta"),
]
BY_NAME = {w.name: w for w in WORKLOADS}
QUICK_WORKLOADS = ["seq_read_1j", "seq_write", "close_after_write", "rand_read_4k", "ttfb", "small_read", "ls_l_cold",
                   "ls_l_warm", "ls_l_remount", "ls_l_rdo", "stat", "create_delete", "find", "find_rdo"]
QUICK_SCALE = 1 / 16


@dataclass
class Scale:
    big: int
    rand_io_4k: int
    rand_io_256k: int
    small_per_job: int
    listing: int
    tree: tuple[int, int, int]
    creates: int

    @classmethod
    def for_factor(cls, factor: float) -> "Scale":
        def n(value: float, low: int) -> int:
            return max(low, int(value * factor))
        return cls(big=max(4, int(1024 * factor)) * MiB, rand_io_4k=n(2000, 50) * 4096,
                   rand_io_256k=n(400, 10) * 256 * 1024, small_per_job=n(125, 2), listing=n(10000, 20),
                   tree=(max(2, int(10 * factor ** (1 / 3))), max(2, int(10 * factor ** (1 / 3))),
                         max(2, int(49 * factor ** (1 / 3)))), creates=n(1000, 20))

    def describe(self) -> dict:
        a, b, c = self.tree
        return {"big_object_mib": self.big // MiB, "rand_4k_reads": self.rand_io_4k // 4096,
                "rand_256k_reads": self.rand_io_256k // (256 * 1024), "small_files": 8 * self.small_per_job,
                "small_file_kib": 64, "listing_entries": self.listing, "tree": f"{a} x {b} x {c} files",
                "tree_entries": a * b * c + a * b + a, "creates": self.creates}


def drop_caches() -> None:
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3")
    except OSError:
        pass


# -- data ------------------------------------------------------------------------------------------------------


def populate(server: LocalServer, scale: Scale) -> None:
    """Lay out the bucket as ossmount/ossfs would have written it (modes in x-oss-meta-*, dir/ objects)."""
    bucket = server.oss2_bucket(BUCKET, enable_crc=False)
    now = str(int(time.time()))
    file_meta = {"x-oss-meta-mode": FILE_MODE, "x-oss-meta-uid": "0", "x-oss-meta-gid": "0", "x-oss-meta-mtime": now}
    dir_meta = dict(file_meta, **{"x-oss-meta-mode": DIR_MODE, "Content-Type": "application/octet-stream"})
    block = os.urandom(MiB)
    payload = bytearray(block * (scale.big // MiB))
    bucket.put_object(BIG, memoryview(payload), headers=file_meta)
    del payload
    keys: list[tuple[str, dict]] = [("listing/", dir_meta), ("tree/", dir_meta)]
    keys += [(f"listing/f{i:05d}", file_meta) for i in range(scale.listing)]
    a, b, c = scale.tree
    for i in range(a):
        keys.append((f"tree/d{i:02d}/", dir_meta))
        for j in range(b):
            keys.append((f"tree/d{i:02d}/e{j:02d}/", dir_meta))
            keys += [(f"tree/d{i:02d}/e{j:02d}/f{k:03d}", file_meta) for k in range(c)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda item: bucket.put_object(item[0], b"", headers=item[1]), keys))


def etag_is_md5(server: LocalServer) -> bool:
    """Whether the server gives MD5 ETags (`--etag md5`) or leaves the hashing out (`--etag fast`): one probe PUT."""
    body = b"ossmount benchmark: etag probe"
    etag = server.oss2_bucket(BUCKET, enable_crc=False).put_object("etag-probe", body).etag
    return etag.strip('"').upper() == hashlib.md5(body).hexdigest().upper()


def delete_prefix(server: LocalServer, prefix: str) -> None:
    import oss2
    bucket = server.oss2_bucket(BUCKET)
    keys = [obj.key for obj in oss2.ObjectIteratorV2(bucket, prefix=prefix, max_keys=1000)]
    for start in range(0, len(keys), 1000):
        bucket.batch_delete_objects(keys[start:start + 1000])


def wait_for_object(server: LocalServer, key: str, size: int, timeout: float = 600.0) -> None:
    """Block until `key` exists on the server with `size` bytes (clients that upload after close)."""
    import oss2
    bucket = server.oss2_bucket(BUCKET)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if bucket.head_object(key).content_length == size:
                return
        except oss2.exceptions.NoSuchKey:
            pass
        time.sleep(0.02)
    raise RuntimeError(f"{key} did not reach the server with {size} bytes within {timeout:.0f} s")


# -- running one measurement ------------------------------------------------------------------------------------


def run_fio(job: str, directory: Path, env: dict[str, str]) -> dict:
    argv = ["fio", "--output-format=json", f"--directory={directory}", str(FIO_DIR / job)]
    done = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, **env}, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"fio {job} failed: {done.stderr.strip() or done.stdout[-500:]}")
    text = done.stdout[done.stdout.index("{"):]
    return json.loads(text)["jobs"][0]


def fio_bandwidth(job: dict, direction: str) -> float:
    return job[direction]["bw_bytes"] / MiB


class Measurement:
    """Counters, CPU and RSS around one timed section."""

    def __init__(self, server: LocalServer, pid: int | None):
        self.server, self.pid = server, pid

    def __enter__(self):
        self.server.admin.reset_counters()
        self.meter = ProcessMeter(self.pid) if self.pid else None
        self.cpu0 = time.process_time()
        return self

    def __exit__(self, *exc):
        usage = self.meter.stop() if self.meter else None
        self.requests = self.server.admin.counters()
        self.cpu_seconds = usage.cpu_seconds if usage else round(time.process_time() - self.cpu0, 3)
        self.peak_rss_mib = usage.peak_rss_mib if usage else None


class Runner:
    def __init__(self, server: LocalServer, scale: Scale, runs: int):
        self.server, self.scale, self.runs = server, scale, runs

    def env(self, **extra: str) -> dict[str, str]:
        base = {"BENCH_BIG": BIG, "BENCH_BIG_SIZE": str(self.scale.big), "BENCH_JOBS": "1", "BENCH_INVALIDATE": "1",
                "BENCH_SMALL_PER_JOB": str(self.scale.small_per_job), "BENCH_BS": "4k",
                "BENCH_RAND_IO": str(self.scale.rand_io_4k)}
        base.update(extra)
        return base

    # Each returns (value, Measurement) for one run on `client` (mounted).
    def fio_read(self, client, job: str, direction: str = "read", **env) -> tuple[float, Measurement]:
        drop_caches()
        with Measurement(self.server, client.pid) as m:
            result = run_fio(job, client.mountpoint, self.env(**env))
        return fio_bandwidth(result, direction), m

    def seq_read_1j(self, client):
        return self.fio_read(client, "seq_read.fio")

    def seq_read_4j(self, client):
        return self.fio_read(client, "seq_read.fio", BENCH_JOBS="4")

    def reread(self, client):
        drop_caches()
        run_fio("seq_read.fio", client.mountpoint, self.env())
        with Measurement(self.server, client.pid) as m:
            result = run_fio("seq_read.fio", client.mountpoint, self.env(BENCH_INVALIDATE="0"))
        return fio_bandwidth(result, "read"), m

    def rand_read_4k(self, client):
        return self.fio_read(client, "rand_read.fio")

    def rand_read_256k(self, client):
        return self.fio_read(client, "rand_read.fio", BENCH_BS="256k", BENCH_RAND_IO=str(self.scale.rand_io_256k))

    def ttfb(self, client):
        drop_caches()
        with Measurement(self.server, client.pid) as m:
            result = run_fio("ttfb.fio", client.mountpoint, self.env())
        return result["read"]["lat_ns"]["mean"] / 1e6, m

    def seq_write(self, client):
        key = f"write-{client.name}.bin"
        started = time.perf_counter()
        with Measurement(self.server, client.pid) as m:
            run_fio("seq_write.fio", client.mountpoint, self.env(BENCH_WRITE_FILE=key))
            if client.fuse and client.name != "ramfs":
                wait_for_object(self.server, key, self.scale.big)
        elapsed = time.perf_counter() - started
        os.unlink(client.mountpoint / key)
        return self.scale.big / MiB / elapsed, m

    def close_after_write(self, client):
        """The writes and the close of a new big file timed apart: close() is the commit (ossmount uploads the
        last parts; s3fs the whole file)."""
        key = f"close-{client.name}.bin"
        path = client.mountpoint / key
        block = os.urandom(MiB)
        with Measurement(self.server, client.pid) as m:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            started = time.perf_counter()
            for _ in range(self.scale.big // MiB):
                os.write(fd, block)
            written = time.perf_counter()
            os.close(fd)
            closed = time.perf_counter()
            if client.fuse and client.name != "ramfs":
                wait_for_object(self.server, key, self.scale.big)
        os.unlink(path)
        return (closed - written) / (written - started) * 100, m

    def _small_dir(self, client) -> Path:
        path = client.mountpoint / f"small-{client.name}"
        path.mkdir(exist_ok=True)
        return path

    def small_write(self, client):
        directory = self._small_dir(client)
        with Measurement(self.server, client.pid) as m:
            result = run_fio("small_files_write.fio", directory, self.env())
        return fio_bandwidth(result, "write"), m

    def small_read(self, client):
        directory = self._small_dir(client)
        if len(os.listdir(directory)) < 8 * self.scale.small_per_job:
            run_fio("small_files_write.fio", directory, self.env())
        drop_caches()
        with Measurement(self.server, client.pid) as m:
            result = run_fio("small_files_read.fio", directory, self.env())
        return fio_bandwidth(result, "read"), m

    def _timed(self, client, action, *, fresh: bool = True, variant: str | None = None,
               keep_persistent: bool = False):
        if fresh or client.variant != variant:
            client.remount(variant, keep_persistent=keep_persistent)
            drop_caches()
        with Measurement(self.server, client.pid) as m:
            started = time.perf_counter()
            action()
            elapsed = time.perf_counter() - started
        return elapsed, m

    def _ls(self, client):
        subprocess.run(["ls", "-l", str(client.mountpoint / "listing")], stdout=subprocess.DEVNULL, check=True)

    def ls_l_cold(self, client):
        return self._timed(client, lambda: self._ls(client))

    def ls_l_warm(self, client):
        self._timed(client, lambda: self._ls(client))
        return self._timed(client, lambda: self._ls(client), fresh=False)

    def ls_l_remount(self, client):
        self._timed(client, lambda: self._ls(client))
        return self._timed(client, lambda: self._ls(client), keep_persistent=True)

    def ls_l_rdo(self, client):
        return self._timed(client, lambda: self._ls(client), variant="readdir_optimize")

    def stat(self, client):
        paths = [client.mountpoint / "listing" / f"f{i:05d}" for i in range(self.scale.listing)]
        return self._timed(client, lambda: [os.stat(p) for p in paths])

    def create_delete(self, client):
        directory = client.mountpoint / f"creates-{client.name}"
        directory.mkdir(exist_ok=True)

        def action():
            names = [directory / f"c{i:05d}" for i in range(self.scale.creates)]
            for name in names:
                os.close(os.open(name, os.O_CREAT | os.O_WRONLY, 0o644))
            for name in names:
                os.unlink(name)
        return self._timed(client, action, fresh=False)

    def find(self, client, variant: str | None = None):
        return self._timed(client, lambda: subprocess.run(["find", str(client.mountpoint / "tree")],
                                                          stdout=subprocess.DEVNULL, check=True), variant=variant)

    def find_rdo(self, client):
        return self.find(client, "readdir_optimize")


class PythonGet:
    """The best Python client pipeline against the same server: oss2-signed GETs read with http.client `readinto`
    into a preallocated 4 MiB buffer (one stream per job), as benchmarks/server.py measures it."""

    name = "python-get"
    kind = "limit"
    fuse = False

    def __init__(self, server: LocalServer, scale: Scale):
        self.server, self.scale = server, scale
        self.bucket = server.oss2_bucket(BUCKET, enable_crc=False)

    def describe(self) -> dict:
        import oss2
        return {"kind": self.kind, "version": f"oss2 {oss2.__version__} + http.client readinto",
                "command": "in-process", "options": {"buffer": "4 MiB preallocated", "streams": "1 per job"}}

    def _read(self, byte_range=None) -> int:
        buffer = bytearray(4 * MiB)
        result = self.bucket.get_object(BIG, byte_range=byte_range,
                                        headers={"x-oss-range-behavior": "standard"} if byte_range else None)
        raw = result.resp.response.raw._fp  # noqa: SLF001 - the http.client response under urllib3
        total = 0
        while count := raw.readinto(buffer):
            total += count
        return total

    def _streams(self, count: int):
        with Measurement(self.server, None) as m:
            started = time.perf_counter()
            with ThreadPoolExecutor(count) as pool:
                total = sum(pool.map(lambda _: self._read(), range(count)))
            elapsed = time.perf_counter() - started
        return total / MiB / elapsed, m

    def seq_read_1j(self):
        return self._streams(1)

    def seq_read_4j(self):
        return self._streams(4)

    def reread(self):
        return self._streams(1)

    def _random(self, size: int, total: int):
        import random
        rng = random.Random(1)
        count = total // size
        with Measurement(self.server, None) as m:
            started = time.perf_counter()
            for _ in range(count):
                offset = rng.randrange(0, self.scale.big - size)
                self._read((offset, offset + size - 1))
            elapsed = time.perf_counter() - started
        return count * size / MiB / elapsed, m

    def rand_read_4k(self):
        return self._random(4096, self.scale.rand_io_4k)

    def rand_read_256k(self):
        return self._random(256 * 1024, self.scale.rand_io_256k)

    def ttfb(self):
        with Measurement(self.server, None) as m:
            started = time.perf_counter()
            for _ in range(10):
                self._read((0, 0))
            elapsed = time.perf_counter() - started
        return elapsed / 10 * 1000, m


# -- the run ----------------------------------------------------------------------------------------------------


def summarize(samples: list[tuple[float, Measurement]]) -> dict:
    values = [round(v, 3) for v, _ in samples]
    median_index = sorted(range(len(values)), key=lambda i: values[i])[len(values) // 2]
    m = samples[median_index][1]
    return {"median": round(statistics.median(values), 3), "min": min(values), "max": max(values), "runs": values,
            "requests": sum(m.requests.values()), "requests_by_op": m.requests,
            "cpu_seconds": statistics.median([s[1].cpu_seconds for s in samples]),
            "peak_rss_mib": max((s[1].peak_rss_mib or 0) for s in samples) or None}


def machine() -> dict:
    model = ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "cpu_model": model, "memory_gib": round(os.sysconf("SC_PAGE_SIZE") *
            os.sysconf("SC_PHYS_PAGES") / 2**30, 1), "kernel": platform.release(),
            "python": platform.python_version(), "fio": (subprocess.run(["fio", "--version"], capture_output=True,
                                                                       text=True).stdout.strip()),
            "load_average_at_start": round(os.getloadavg()[0], 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks/run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="reduced set at 1/16 scale (under 3 minutes)")
    parser.add_argument("--scale", type=float, default=None, help="size factor (1 = 1 GiB object, 10k listing)")
    parser.add_argument("--runs", type=int, default=3, help="runs per figure (median, min, max); at least 3")
    parser.add_argument("--clients", default="ossmount,s3fs,rclone,python-get,ramfs")
    parser.add_argument("--workloads", default=None, help="comma-separated subset (default: all, or the quick set)")
    parser.add_argument("--output-dir", default=str(HERE / "results"))
    parser.add_argument("--data-dir", default="/dev/shm" if os.path.isdir("/dev/shm") else None)
    parser.add_argument("--server-etag", choices=("md5", "fast"), default="md5",
                        help="the server's ETag mode (`ossmount serve --etag`): md5 hashes every body as OSS does, on "
                             "the same cores as the clients; fast leaves that hashing out (on OSS it runs on "
                             "Alibaba's machines)")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unmount and stop the server on the way out
    if args.runs < 3:
        parser.error("--runs must be at least 3 (every figure is a median of at least 3 runs)")
    if os.geteuid() != 0:
        parser.error("run as root: the benchmark drops the page cache and mounts FUSE filesystems")
    scale = Scale.for_factor(args.scale if args.scale is not None else (QUICK_SCALE if args.quick else 1.0))
    workloads = [BY_NAME[name] for name in (args.workloads.split(",") if args.workloads else
                                           (QUICK_WORKLOADS if args.quick else [w.name for w in WORKLOADS]))]
    wanted = args.clients.split(",")
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="ossmount-bench-", dir=args.data_dir))
    document = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "command": "benchmarks/run " + " ".join(argv if argv is not None else sys.argv[1:]),
                "quick": args.quick, "runs": args.runs, "scale": scale.describe(), "machine": machine(),
                "note": "",
                "server": {"data_dir": "tmpfs (" + str(args.data_dir) + ")", "etag": args.server_etag},
                "workloads": {w.name: {"unit": w.unit, "description": w.description,
                                       "better": "higher" if w.higher_is_better else "lower"} for w in workloads},
                "clients": {}, "results": {w.name: {} for w in workloads}}
    document["note"] = run_note(document["machine"]["load_average_at_start"])
    clients = []
    try:
        with LocalServer(work / "server", buckets=(BUCKET,), extra_args=("--etag", args.server_etag)) as server:
            print(f"benchmark: server on {server.endpoint}, data on {work}; laying out the bucket "
                  f"({scale.describe()})", flush=True)
            populate(server, scale)
            document["server"]["etag_is_md5"] = etag_is_md5(server)
            runner = Runner(server, scale, args.runs)
            factories = {"ossmount": lambda: OssmountClient(server, BUCKET, work),
                         "s3fs": lambda: S3fsClient(server, BUCKET, work),
                         "rclone": lambda: RcloneClient(server, BUCKET, work),
                         "ramfs": lambda: RamFsClient(server, BUCKET, work, BIG, scale.big),
                         "python-get": lambda: PythonGet(server, scale)}
            for name in wanted:
                client = factories[name]()
                reason = client.missing() if hasattr(client, "missing") else None
                document["clients"][name] = {**client.describe(), "status": "skipped" if reason else "measured"}
                if reason:
                    document["clients"][name]["reason"] = reason
                    print(f"benchmark: {name} skipped: {reason}", flush=True)
                    continue
                clients.append(client)
            jobs = [(c, w) for c in clients for w in workloads if supports(c, w)]
            for index, (client, workload) in enumerate(jobs, 1):
                samples = []
                try:
                    if getattr(client, "fuse", False) and client.process is None:
                        client.mount()
                    for run in range(args.runs):
                        if client.fuse:
                            samples.append(getattr(runner, workload.name)(client))
                        else:
                            samples.append(getattr(client, workload.name)())
                        value, m = samples[-1]
                        print(f"[{index}/{len(jobs)}] {client.name:<10} {workload.name:<14} run {run + 1}/"
                              f"{args.runs}: {value:9.2f} {workload.unit:<5} {sum(m.requests.values()):6d} requests"
                              f" {m.cpu_seconds:6.2f} CPU-s  peak RSS {m.peak_rss_mib or '-'} MiB", flush=True)
                except Exception as exc:  # noqa: BLE001 - one failing client must not lose the others' figures
                    print(f"[{index}/{len(jobs)}] {client.name} {workload.name} FAILED: {exc}", flush=True)
                    document["results"][workload.name][client.name] = {"error": str(exc)}
                    if getattr(client, "fuse", False):
                        client.unmount()
                    continue
                document["results"][workload.name][client.name] = summarize(samples)
            for client in clients:
                if getattr(client, "fuse", False):
                    client.close()
    finally:
        for client in clients:
            if getattr(client, "fuse", False):
                client.close()
        shutil.rmtree(work, ignore_errors=True)
    document["machine"]["load_average_at_end"] = round(os.getloadavg()[0], 2)
    document["elapsed_seconds"] = round(time.monotonic() - started, 1)
    document["ratios"] = report.ratios(document)
    paths = report.write_all(document, Path(args.output_dir))
    print(report.markdown(document))
    print("written: " + ", ".join(str(p) for p in paths), flush=True)
    return 0


def supports(client, workload: Workload) -> bool:
    if client.name == "ramfs":
        return workload.kind == "fio"
    if client.name == "python-get":
        return hasattr(client, workload.name)
    return True


if __name__ == "__main__":
    raise SystemExit(main())
