"""Throughput of `ossmount serve` for one large object, next to a raw read of the same file.

    .venv/bin/python benchmarks/server.py [--size-mib 1024] [--runs 3] [--data-dir /dev/shm]

Starts the server as a subprocess (data dir on /dev/shm when available), then per run:
* PUT: oss2 `put_object` of an in-memory buffer (enable_crc=False, as ossmount will use it),
* PUT (fast ETag): the same against a second server run with `--etag fast` (no MD5: oss-api.md §5.2),
* GET: oss2 `get_object`, body read with `resp.response.raw.readinto` into a 4 MiB buffer,
* GET (httpclient): the same request, read with http.client's `readinto` under urllib3,
* raw: a plain Python `readinto` loop over the server's blob file holding the object (page cache),
and prints a table plus writes benchmarks/results/server-<date>.json with MiB/s and ratios to raw.
Everything it creates is removed at the end.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ossmount.testing import LocalServer  # noqa: E402

BUFFER_SIZE = 4 * 1024 * 1024
BUCKET = "bench"
KEY = "bench-object"


def make_payload(size: int) -> bytearray:
    payload = bytearray(size)
    view = memoryview(payload)
    step = 64 * 1024 * 1024
    for offset in range(0, size, step):
        chunk = os.urandom(min(step, size - offset))
        view[offset:offset + len(chunk)] = chunk
    return payload


def timed_put(bucket, payload: bytearray) -> float:
    started = time.perf_counter()
    bucket.put_object(KEY, memoryview(payload))
    return time.perf_counter() - started


def read_all(stream, buffer: bytearray) -> int:
    """Read `stream` to its end with `readinto` into `buffer`; return the byte count."""
    total = 0
    while True:
        count = stream.readinto(buffer)
        if not count:
            return total
        total += count


def timed_get(bucket, size: int, *, below_urllib3: bool = False) -> float:
    """oss2 GET read with urllib3's `raw.readinto` (the brief's method, two copies per read), or with
    `below_urllib3` straight from http.client's `readinto` (one copy), which shows the server's share."""
    buffer = bytearray(BUFFER_SIZE)
    started = time.perf_counter()
    result = bucket.get_object(KEY)
    raw = result.resp.response.raw
    if below_urllib3:
        raw = raw._fp  # noqa: SLF001 - the http.client.HTTPResponse under urllib3
    total = read_all(raw, buffer)
    elapsed = time.perf_counter() - started
    if total != size:
        raise RuntimeError(f"GET returned {total} bytes, expected {size}")
    return elapsed


def timed_raw_read(path: Path, size: int) -> float:
    buffer = bytearray(BUFFER_SIZE)
    started = time.perf_counter()
    with open(path, "rb", buffering=0) as f:
        total = read_all(f, buffer)
    elapsed = time.perf_counter() - started
    if total < size:
        raise RuntimeError(f"raw read got {total} bytes, expected {size}")
    return elapsed


def largest_file(root: Path) -> Path:
    files = [path for path in root.rglob("*") if path.is_file()]
    return max(files, key=lambda path: path.stat().st_size)


def run(size_mib: int, runs: int, parent: str | None) -> dict:
    import oss2

    size = size_mib * 1024 * 1024
    if parent is None:
        parent = "/dev/shm" if os.path.isdir("/dev/shm") else None
    work = Path(tempfile.mkdtemp(prefix="ossmount-bench-", dir=parent))
    samples: dict[str, list[float]] = {"put": [], "put_fast_etag": [], "get": [], "get_httpclient": [],
                                       "raw_read": []}
    try:
        payload = make_payload(size)
        with LocalServer(work, buckets=(BUCKET,)) as server:
            bucket = server.oss2_bucket(BUCKET, enable_crc=False)
            for _ in range(runs):
                samples["put"].append(size / timed_put(bucket, payload) / 2**20)
                blob = largest_file(work / "data")
                samples["get"].append(size / timed_get(bucket, size) / 2**20)
                samples["get_httpclient"].append(size / timed_get(bucket, size, below_urllib3=True) / 2**20)
                samples["raw_read"].append(size / timed_raw_read(blob, size) / 2**20)
            bucket.delete_object(KEY)
        with LocalServer(work / "fast-etag", buckets=(BUCKET,), extra_args=("--etag", "fast")) as server:
            bucket = server.oss2_bucket(BUCKET, enable_crc=False)
            for _ in range(runs):
                samples["put_fast_etag"].append(size / timed_put(bucket, payload) / 2**20)
            bucket.delete_object(KEY)
        del payload
    finally:
        shutil.rmtree(work, ignore_errors=True)

    medians = {name: statistics.median(values) for name, values in samples.items()}
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                    "load_average_1min_at_end": round(os.getloadavg()[0], 2)},
        "object_mib": size_mib,
        "runs": runs,
        "data_dir_parent": parent or tempfile.gettempdir(),
        "oss2": oss2.__version__,
        "mib_per_s": {name: [round(value, 1) for value in values] for name, values in samples.items()},
        "median_mib_per_s": {name: round(value, 1) for name, value in medians.items()},
        "ratio_to_raw_read": {
            "get": round(medians["get"] / medians["raw_read"], 3),
            "get_httpclient": round(medians["get_httpclient"] / medians["raw_read"], 3),
            "put": round(medians["put"] / medians["raw_read"], 3),
            "put_fast_etag": round(medians["put_fast_etag"] / medians["raw_read"], 3),
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--data-dir", default=None, help="parent of the temporary data dir (default /dev/shm)")
    parser.add_argument("--output", default=None, help="JSON file (default benchmarks/results/server-<date>.json)")
    args = parser.parse_args()

    report = run(args.size_mib, args.runs, args.data_dir)
    output = Path(args.output) if args.output else (
        Path(__file__).resolve().parent / "results" / f"server-{datetime.date.today().isoformat()}.json")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n")

    print(f"{report['object_mib']} MiB object, {report['runs']} runs, data dir under {report['data_dir_parent']},"
          f" load average {report['machine']['load_average_1min_at_end']}")
    print(f"{'path':<15} {'median MiB/s':>13} {'ratio to raw':>13}   runs")
    for name in ("raw_read", "get", "get_httpclient", "put", "put_fast_etag"):
        ratio = report["ratio_to_raw_read"].get(name, 1.0)
        runs = ", ".join(f"{value:.0f}" for value in report["mib_per_s"][name])
        print(f"{name:<15} {report['median_mib_per_s'][name]:>13.0f} {ratio:>13.3f}   {runs}")
    print(f"written to {output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
