"""Is `ossmount serve` the bottleneck when many clients use it at once?

    .venv/bin/python benchmarks/server_parallel.py [--size-mib 256] [--streams 4] [--clients 8]
        [--small-requests 6000] [--runs 3] [--server-source DIR] [--label NAME]

Starts the server (`--anonymous`, data dir on /dev/shm) and measures, per run:
* mixed large transfers: `--streams` GETs of distinct `--size-mib` objects and as many PUTs of other keys, all
  at once, each in its own client process; aggregate MiB/s of each direction (bytes / wall time of the batch);
* small requests: `--clients` processes issue GET (4 KiB), HEAD and PUT (4 KiB, own keys) in turn on kept-alive
  connections; requests per second over the batch, and the server process's CPU time per request (µs: less
  sensitive than the rate to other load on the machine);
* small requests while ranges are copied: a sixth as many, while two more clients copy 64 MiB ranges of the large
  objects into multipart parts (UploadPartCopy, as a client renaming a big file does; the server reads the range to
  hash it) one after the other; requests per second of the small clients.
Clients are lean (http.client, unsigned) so that the figures show the server's share rather than an SDK's.
`--server-source DIR` runs the server from another source tree (e.g. `git archive main | tar -x -C DIR`), which is
how before/after figures are taken in one sitting. Writes benchmarks/results/server-parallel-<label>-<date>.json.
"""

from __future__ import annotations

import argparse
import datetime
import http.client
import json
import multiprocessing
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

BUCKET = "bench"
SMALL_SIZE = 4096
SMALL_OBJECTS = 64
BUFFER_SIZE = 4 * 1024 * 1024
MiB = 1024 * 1024


def _connection(port: int) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", port, timeout=600)


def _put(conn: http.client.HTTPConnection, key: str, body) -> None:
    conn.request("PUT", f"/{BUCKET}/{key}", body=body, headers={"Content-Length": str(len(body))})
    response = conn.getresponse()
    response.read()
    if response.status != 200:
        raise RuntimeError(f"PUT {key}: HTTP {response.status}")


def _get_into(conn: http.client.HTTPConnection, key: str, buffer: bytearray) -> int:
    conn.request("GET", f"/{BUCKET}/{key}")
    response = conn.getresponse()
    if response.status != 200:
        raise RuntimeError(f"GET {key}: HTTP {response.status}")
    total = 0
    view = memoryview(buffer)
    while True:
        count = response.readinto(view)
        if not count:
            return total
        total += count


def _large_worker(port: int, direction: str, key: str, size: int, start, results) -> None:
    conn = _connection(port)
    if direction == "put":
        payload = os.urandom(size)
        start.wait()
        began = time.perf_counter()
        _put(conn, key, payload)
    else:
        buffer = bytearray(BUFFER_SIZE)
        start.wait()
        began = time.perf_counter()
        if _get_into(conn, key, buffer) != size:
            raise RuntimeError(f"short GET of {key}")
    results.put((direction, began, time.perf_counter()))
    conn.close()


def _small_worker(port: int, number: int, requests: int, start, results) -> None:
    conn = _connection(port)
    payload = os.urandom(SMALL_SIZE)
    buffer = bytearray(SMALL_SIZE * 2)
    start.wait()
    began = time.perf_counter()
    for i in range(requests):
        kind = i % 3
        if kind == 0:
            _get_into(conn, f"small-{(number + i) % SMALL_OBJECTS}", buffer)
        elif kind == 1:
            conn.request("HEAD", f"/{BUCKET}/small-{(number * 7 + i) % SMALL_OBJECTS}")
            response = conn.getresponse()
            response.read()
        else:
            _put(conn, f"client-{number}-{i % 50}", payload)
    results.put(("small", began, time.perf_counter()))
    conn.close()


COPY_RANGE = 64 * MiB


def _range_copier(port: int, key: str, size: int, start, stop, results) -> None:
    """UploadPartCopy of COPY_RANGE-byte ranges of `key` (not its whole: the server hashes what it copies), one after
    the other into one upload, until `stop` is set."""
    conn = _connection(port)
    conn.request("POST", f"/{BUCKET}/{key}-copy?uploads")
    response = conn.getresponse()
    upload_id = response.read().split(b"<UploadId>")[1].split(b"</UploadId>")[0].decode()
    start.wait()
    began, copies = time.perf_counter(), 0
    while not stop.is_set():
        first = (copies * COPY_RANGE) % (size - COPY_RANGE)
        conn.request("PUT", f"/{BUCKET}/{key}-copy?partNumber={copies % 100 + 1}&uploadId={upload_id}", headers={
            "x-oss-copy-source": f"/{BUCKET}/{key}", "Content-Length": "0",
            "x-oss-copy-source-range": f"bytes={first}-{first + COPY_RANGE - 1}"})
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"UploadPartCopy: HTTP {response.status}")
        copies += 1
    conn.request("DELETE", f"/{BUCKET}/{key}-copy?uploadId={upload_id}")
    conn.getresponse().read()
    results.put(("copy", began, time.perf_counter(), copies))
    conn.close()


def _batch(target, argument_lists, background=None, background_arguments=()) -> list[tuple[str, float, float]]:
    """Run `target` in one process per argument list, all started at once; `background` processes (if any) run
    from the same start until the last `target` process is done."""
    context = multiprocessing.get_context("fork")
    start, stop = context.Event(), context.Event()
    results, background_results = context.Queue(), context.Queue()
    processes = [context.Process(target=target, args=(*arguments, start, results)) for arguments in argument_lists]
    helpers = [context.Process(target=background, args=(*arguments, start, stop, background_results))
               for arguments in background_arguments]
    for process in processes + helpers:
        process.start()
    time.sleep(0.5)  # let every client set up (payloads, connections) before the clock starts
    start.set()
    samples = [results.get(timeout=1800) for _ in processes]
    stop.set()
    for _ in helpers:
        background_results.get(timeout=1800)
    for process in processes + helpers:
        process.join()
        if process.exitcode != 0:
            raise RuntimeError(f"a client process failed with exit code {process.exitcode}")
    return samples


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` so far (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wall(samples) -> float:
    return max(end for _, _, end in samples) - min(began for _, began, _ in samples)


def run(args: argparse.Namespace) -> dict:
    size = args.size_mib * MiB
    parent = args.data_dir or ("/dev/shm" if os.path.isdir("/dev/shm") else None)
    work = Path(tempfile.mkdtemp(prefix="ossmount-bench-parallel-", dir=parent))
    previous_path = os.environ.get("PYTHONPATH")
    if args.server_source:
        os.environ["PYTHONPATH"] = str(Path(args.server_source).resolve())
    figures: dict[str, list[float]] = {"get_mib_s": [], "put_mib_s": [], "mixed_mib_s": [], "small_requests_s": [],
                                       "small_cpu_us": [], "small_during_copies_s": []}
    try:
        with LocalServer(work, buckets=(BUCKET,), anonymous=True, admin_token=None) as server:
            conn = _connection(server.port)
            payload = os.urandom(size)
            for stream in range(args.streams):
                _put(conn, f"large-{stream}", payload)
            del payload
            small = os.urandom(SMALL_SIZE)
            for number in range(SMALL_OBJECTS):
                _put(conn, f"small-{number}", small)
            conn.close()
            for _ in range(args.runs):
                jobs = [(server.port, "get", f"large-{n}", size) for n in range(args.streams)]
                jobs += [(server.port, "put", f"upload-{n}", size) for n in range(args.streams)]
                samples = _batch(_large_worker, jobs)
                wall = _wall(samples)
                gets = [s for s in samples if s[0] == "get"]
                puts = [s for s in samples if s[0] == "put"]
                figures["get_mib_s"].append(len(gets) * size / MiB / _wall(gets))
                figures["put_mib_s"].append(len(puts) * size / MiB / _wall(puts))
                figures["mixed_mib_s"].append(len(samples) * size / MiB / wall)
                per_client = args.small_requests // args.clients
                cpu_before = _cpu_seconds(server.process.pid)
                samples = _batch(_small_worker, [(server.port, n, per_client) for n in range(args.clients)])
                figures["small_cpu_us"].append(
                    (_cpu_seconds(server.process.pid) - cpu_before) / (per_client * args.clients) * 1e6)
                figures["small_requests_s"].append(per_client * args.clients / _wall(samples))
                if size > COPY_RANGE:  # a sixth of the requests: before this change they crawled
                    during = max(1, per_client // 6)
                    samples = _batch(_small_worker, [(server.port, n, during) for n in range(args.clients)],
                                     _range_copier, [(server.port, f"large-{n}", size) for n in range(2)])
                    figures["small_during_copies_s"].append(during * args.clients / _wall(samples))
    finally:
        if args.server_source:
            if previous_path is None:
                os.environ.pop("PYTHONPATH", None)
            else:
                os.environ["PYTHONPATH"] = previous_path
        shutil.rmtree(work, ignore_errors=True)
    return {
        "label": args.label,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "server_source": str(Path(args.server_source).resolve()) if args.server_source else "this checkout",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_average_1min_at_end": round(os.getloadavg()[0], 2)},
        "size_mib": args.size_mib, "streams": args.streams, "clients": args.clients,
        "small_requests": args.small_requests, "runs": args.runs,
        "samples": {name: [round(v, 1) for v in values] for name, values in figures.items()},
        "median": {name: round(statistics.median(values), 1) for name, values in figures.items() if values},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--streams", type=int, default=4, help="parallel GETs, and as many parallel PUTs")
    parser.add_argument("--clients", type=int, default=8, help="small-request client processes")
    parser.add_argument("--small-requests", type=int, default=6000, help="small requests in all, per run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--data-dir", default=None, help="parent of the temporary data dir (default /dev/shm)")
    parser.add_argument("--server-source", default=None, help="run the server from this source tree")
    parser.add_argument("--label", default="current")
    parser.add_argument("--output", default=None)
    args = parser.parse_args()

    report = run(args)
    output = Path(args.output) if args.output else (
        Path(__file__).resolve().parent / "results"
        / f"server-parallel-{args.label}-{datetime.date.today().isoformat()}.json")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"{args.label}: {args.streams}+{args.streams} x {args.size_mib} MiB, {args.clients} small clients, "
          f"{args.runs} runs, load average {report['machine']['load_average_1min_at_end']}")
    for name, value in report["median"].items():
        print(f"  {name:<22} {value:>9.1f}   runs: {', '.join(f'{v:.0f}' for v in report['samples'][name])}")
    print(f"written to {output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
