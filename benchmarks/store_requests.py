"""Client CPU per small request: the store's request path against oss2, timed outside FUSE.

    .venv/bin/python benchmarks/store_requests.py [--requests 2000] [--concurrency 1] [--variants ...]

Starts `ossmount serve` as a subprocess (data on /dev/shm when available), puts a 4 KiB object, a `--big-mib`
object and a directory of `--list-entries` objects, then times N requests of each kind — HeadObject, a 4 KiB
GetObject, a random 4 KiB ranged GetObject of the big object (`GetObject-big`), a ListObjectsV2 page of all the
directory's keys, a 4 KiB PutObject — through each variant:

* `store`: `ossmount.store.ObjectStore` as it is (the mount's request path), under trio;
* `oss2-thread`: oss2.Bucket (requests → urllib3, default Session) called in a worker thread per request
  (`trio.to_thread.run_sync`), which is how the store sent requests before its lean path;
* `oss2-tuned-thread`: the same with a tuned Session: `trust_env=False` (no netrc / proxy / CA-bundle lookups
  per request), a pool as large as the concurrency, CRC off;
* `oss2-tuned-inline`: the tuned oss2 called directly, no thread hop and no trio (what oss2 itself costs).

The client figure is CPU-seconds of *this* process (all threads: `time.process_time`) per request, median of
`--runs`; the server runs in its own process and is counted apart: its CPU-seconds per request (utime + stime of
the `ossmount serve` process from /proc/<pid>/stat, so at the kernel's clock-tick resolution; use a few thousand
requests). Results go to benchmarks/results/store-requests-<date>.json and Markdown tables on stdout.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import trio  # noqa: E402

from ossmount.credentials import Credentials  # noqa: E402
from ossmount.store import ObjectStore, RetryPolicy  # noqa: E402
from ossmount.testing import LocalServer  # noqa: E402
from benchmarks.procstat import tree_cpu_seconds  # noqa: E402

BUCKET = "bench"
SMALL = b"x" * 4096
LIST_PREFIX = "dir/"
LIST_ENTRIES = 20
BIG_KEY = "big"
OPS = ("HeadObject", "GetObject", "GetObject-big", "ListObjectsV2", "PutObject")
VARIANTS = ("store", "oss2-thread", "oss2-tuned-thread", "oss2-tuned-inline")


def _oss2_bucket(server: LocalServer, *, tuned: bool, pool: int) -> Any:
    import oss2

    session = oss2.Session(pool_size=max(pool, 10))
    if tuned:
        session.session.trust_env = False
    return oss2.Bucket(oss2.Auth(server.access_key_id, server.access_key_secret), server.endpoint, BUCKET,
                       session=session, enable_crc=False)


def _random_block(big_size: int) -> int:
    """The offset of a random 4 KiB block of the big object."""
    return random.randrange(max(big_size // 4096, 1)) * 4096


def _oss2_ops(bucket: Any, big_size: int) -> dict[str, Callable[[], Any]]:
    def get(key: str, offset: int) -> bytes:
        return bucket.get_object(key, byte_range=(offset, offset + 4095),
                                 headers={"x-oss-range-behavior": "standard"}).read()

    return {
        "HeadObject": lambda: bucket.head_object("small"),
        "GetObject": lambda: get("small", 0),
        "GetObject-big": lambda: get(BIG_KEY, _random_block(big_size)),
        "ListObjectsV2": lambda: bucket.list_objects_v2(prefix=LIST_PREFIX, delimiter="/", max_keys=1000),
        "PutObject": lambda: bucket.put_object("put-target", SMALL),
    }


def _store_ops(store: ObjectStore, big_size: int) -> dict[str, Callable[[], Awaitable[Any]]]:
    buffer = memoryview(bytearray(4096))
    return {
        "HeadObject": lambda: store.head("small"),
        "GetObject": lambda: store.get_into("small", 0, buffer),
        "GetObject-big": lambda: store.get_into(BIG_KEY, _random_block(big_size), buffer),
        "ListObjectsV2": lambda: store.list_page(LIST_PREFIX),
        "PutObject": lambda: store.put("put-target", SMALL),
    }


async def _run_async(call: Callable[[], Awaitable[Any]], count: int, concurrency: int) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of `count` awaits of `call` spread over `concurrency` tasks."""
    per_task = [count // concurrency + (1 if i < count % concurrency else 0) for i in range(concurrency)]

    async def worker(n: int) -> None:
        for _ in range(n):
            await call()

    cpu, wall = time.process_time(), time.perf_counter()
    async with trio.open_nursery() as nursery:
        for n in per_task:
            nursery.start_soon(worker, n)
    return time.process_time() - cpu, time.perf_counter() - wall


def _server_cpu(server: LocalServer) -> float:
    """CPU-seconds the `ossmount serve` process (and any child) has used so far."""
    assert server.process is not None
    return tree_cpu_seconds(server.process.pid)


def measure_variant(server: LocalServer, variant: str, count: int, concurrency: int, warmup: int,
                    big_size: int) -> dict[str, tuple[float, float, float]]:
    """{op: (client CPU ms per request, requests per second, server CPU ms per request)} of one variant."""
    results: dict[str, tuple[float, float, float]] = {}
    if variant == "oss2-tuned-inline":
        ops = _oss2_ops(_oss2_bucket(server, tuned=True, pool=1), big_size)
        for op, call in ops.items():
            for _ in range(warmup):
                call()
            server_cpu = _server_cpu(server)
            cpu, wall = time.process_time(), time.perf_counter()
            for _ in range(count):
                call()
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            results[op] = (cpu / count * 1000, count / wall, (_server_cpu(server) - server_cpu) / count * 1000)
        return results

    async def main() -> None:
        if variant == "store":
            store = ObjectStore.create(endpoint=server.endpoint, bucket=BUCKET,
                                       credentials=Credentials(server.access_key_id, server.access_key_secret),
                                       retry=RetryPolicy(max_attempts=1, deadline=None),
                                       max_connections=max(concurrency, 1))
            ops = _store_ops(store, big_size)
        else:
            bucket = _oss2_bucket(server, tuned=variant == "oss2-tuned-thread", pool=concurrency)
            limiter = trio.CapacityLimiter(max(concurrency, 1))
            ops = {op: (lambda fn=fn: trio.to_thread.run_sync(fn, limiter=limiter))
                   for op, fn in _oss2_ops(bucket, big_size).items()}
        for op, call in ops.items():
            await _run_async(call, warmup, concurrency)
            server_cpu = _server_cpu(server)
            cpu, wall = await _run_async(call, count, concurrency)
            results[op] = (cpu / count * 1000, count / wall, (_server_cpu(server) - server_cpu) / count * 1000)
        if variant == "store":
            await store.aclose() if hasattr(store, "aclose") else None

    trio.run(main)
    return results


def populate(server: LocalServer, big_size: int, list_entries: int) -> None:
    bucket = server.oss2_bucket(BUCKET, enable_crc=False)
    bucket.put_object("small", SMALL)
    bucket.put_object(BIG_KEY, os.urandom(1 << 20) * (big_size >> 20))
    for i in range(list_entries):
        bucket.put_object(f"{LIST_PREFIX}f{i:04d}", b"")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000, help="requests per operation and run")
    parser.add_argument("--concurrency", type=int, default=1, help="requests in flight at once")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--big-mib", type=int, default=256, help="size of the object of GetObject-big (MiB)")
    parser.add_argument("--list-entries", type=int, default=LIST_ENTRIES,
                        help="keys in the listed directory (one ListObjectsV2 page: at most 1000)")
    parser.add_argument("--no-save", action="store_true", help="print only; write no results file")
    args = parser.parse_args()

    base = "/dev/shm" if os.path.isdir("/dev/shm") else None
    with tempfile.TemporaryDirectory(prefix="ossmount-store-bench-", dir=base) as tmp:
        with LocalServer(Path(tmp) / "oss", buckets=(BUCKET,), extra_args=("--etag", "fast")) as server:
            big_size = max(args.big_mib, 1) << 20
            populate(server, big_size, min(args.list_entries, 1000))
            figures: dict[str, dict[str, list[tuple[float, float, float]]]] = {}
            for _ in range(args.runs):
                for variant in args.variants:
                    for op, value in measure_variant(server, variant, args.requests, args.concurrency,
                                                     args.warmup, big_size).items():
                        figures.setdefault(variant, {}).setdefault(op, []).append(value)

    table = {variant: {op: {"cpu_ms_per_request": statistics.median(v[0] for v in runs),
                            "cpu_ms_min": min(v[0] for v in runs), "cpu_ms_max": max(v[0] for v in runs),
                            "requests_per_second": statistics.median(v[1] for v in runs),
                            "server_cpu_ms_per_request": statistics.median(v[2] for v in runs)}
                       for op, runs in ops.items()}
             for variant, ops in figures.items()}
    print(f"client CPU ms per request (median of {args.runs} runs of {args.requests}, concurrency "
          f"{args.concurrency}; requests/s in brackets)\n")
    print("| variant | " + " | ".join(OPS) + " |")
    print("|---|" + "---|" * len(OPS))
    for variant, ops in table.items():
        cells = [f"{ops[op]['cpu_ms_per_request']:.3f} ({ops[op]['requests_per_second']:.0f}/s)" for op in OPS]
        print(f"| {variant} | " + " | ".join(cells) + " |")
    print(f"\nserver (`ossmount serve`) CPU ms per request, same runs\n")
    print("| variant | " + " | ".join(OPS) + " |")
    print("|---|" + "---|" * len(OPS))
    for variant, ops in table.items():
        print(f"| {variant} | " + " | ".join(f"{ops[op]['server_cpu_ms_per_request']:.3f}" for op in OPS) + " |")
    print(f"\nload average {' '.join(f'{load:.2f}' for load in os.getloadavg())}")
    if not args.no_save:
        out = Path(__file__).resolve().parent / "results" / f"store-requests-{datetime.date.today()}.json"
        out.write_text(json.dumps({
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                       f"Python {platform.python_version()}",
            "load_average": os.getloadavg(), "requests": args.requests, "concurrency": args.concurrency,
            "big_mib": args.big_mib, "list_entries": args.list_entries,
            "runs": args.runs, "figures": table}, indent=2) + "\n")
        print(f"\nwritten to {out}")


if __name__ == "__main__":
    main()
