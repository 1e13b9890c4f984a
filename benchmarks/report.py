"""Benchmark results as JSON, a Markdown table and a PNG chart (pure formatting, no measuring).

Ratios are of speeds, so > 1 always means ossmount is faster: for MiB/s figures ossmount / other, for times
other / ossmount."""

from __future__ import annotations

import json
from pathlib import Path

SUBJECT = "ossmount"
PEERS = ("s3fs", "rclone")
LIMITS = ("python-get", "ramfs")
ORDER = (SUBJECT, *PEERS, *LIMITS)


def _median(document: dict, workload: str, client: str) -> float | None:
    entry = document["results"].get(workload, {}).get(client)
    return entry.get("median") if entry and "median" in entry else None


def ratios(document: dict) -> dict:
    """{workload: {"ossmount/s3fs": r, ...}} for every other client measured on that workload."""
    out: dict[str, dict[str, float]] = {}
    for workload, info in document["workloads"].items():
        mine = _median(document, workload, SUBJECT)
        if not mine:
            continue
        for other in ORDER[1:]:
            theirs = _median(document, workload, other)
            if not theirs:
                continue
            ratio = mine / theirs if info["better"] == "higher" else theirs / mine
            out.setdefault(workload, {})[f"{SUBJECT}/{other}"] = round(ratio, 2)
    return out


def _clients(document: dict) -> list[str]:
    return [c for c in ORDER if c in document["clients"]]


def _cell(document: dict, workload: str, client: str) -> str:
    status = document["clients"].get(client, {})
    if status.get("status") == "skipped":
        return "skipped"
    entry = document["results"].get(workload, {}).get(client)
    if entry is None:
        return "–"
    if "error" in entry:
        return "failed"
    digits = 0 if entry["median"] >= 100 else (1 if entry["median"] >= 10 else 2)
    return f"{entry['median']:.{digits}f} ({entry['min']:.{digits}f}–{entry['max']:.{digits}f})"


def markdown(document: dict) -> str:
    clients = _clients(document)
    ratio_names = [f"{SUBJECT}/{c}" for c in clients if c != SUBJECT]
    m = document["machine"]
    lines = [f"Run {document['date']}: `{document['command'].strip()}`; {document['runs']} runs per figure, "
             f"median (min–max). Machine: {m['cpus']} × {m['cpu_model']}, {m['memory_gib']} GiB, Linux "
             f"{m['kernel']}, Python {m['python']}, {m['fio']}; load average {m['load_average_at_start']} at start, "
             f"{m.get('load_average_at_end', '?')} at end. Scale: {document['scale']}. Server: `ossmount serve "
             f"--etag {document.get('server', {}).get('etag', 'md5')}`, data on "
             f"{document.get('server', {}).get('data_dir', '?')}.", "",
             document["note"], "",
             "| workload | unit | " + " | ".join(clients) + " | " + " | ".join(ratio_names) + " |",
             "|---|---|" + "---|" * (len(clients) + len(ratio_names))]
    for workload, info in document["workloads"].items():
        row = [workload, info["unit"]] + [_cell(document, workload, c) for c in clients]
        rates = document.get("ratios", {}).get(workload, {})
        row += [f"{rates[name]:.2f}" if name in rates else "–" for name in ratio_names]
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "Targets of issue 11 measured by this run:", "", targets(document).rstrip("\n"),
              "", "Ratios are of speeds: above 1 means ossmount is faster. Per run of the median figure: requests "
              "the server counted / CPU-seconds of the FUSE process / its peak RSS (MiB):", "",
              "| workload | " + " | ".join(c for c in clients if c != "python-get") + " |",
              "|---|" + "---|" * len([c for c in clients if c != "python-get"])]
    for workload in document["workloads"]:
        cells = []
        for client in clients:
            if client == "python-get":
                continue
            entry = document["results"].get(workload, {}).get(client)
            if not entry or "median" not in entry:
                cells.append("–")
                continue
            cells.append(f"{entry['requests']} / {entry['cpu_seconds']:.2f} / {entry['peak_rss_mib'] or '–'}")
        lines.append(f"| {workload} | " + " | ".join(cells) + " |")
    skipped = [f"{name}: {info['reason']}" for name, info in document["clients"].items()
               if info.get("status") == "skipped"]
    if skipped:
        lines += ["", "Skipped: " + "; ".join(skipped) + "."]
    return "\n".join(lines) + "\n"


# The targets of issue 11 ("Performance, part 2") that one run measures: (label, workload, check).
# A check takes the document and answers (measured as text, met or None when the run lacks the figures).
def _ratio(document: dict, workload: str, other: str) -> float | None:
    return document.get("ratios", {}).get(workload, {}).get(f"{SUBJECT}/{other}")


def _entry(document: dict, workload: str, client: str = SUBJECT) -> dict | None:
    entry = document["results"].get(workload, {}).get(client)
    return entry if entry and "median" in entry else None


def _at_least(workload: str, other: str, factor: float):
    def check(document: dict):
        ratio = _ratio(document, workload, other)
        return (None, None) if ratio is None else (f"{ratio:.2f} ×", ratio >= factor)
    return check


def _requests(workload: str, ops: tuple[str, ...] | None):
    """No request of `ops` (every operation with None) in the median run of ossmount."""
    def check(document: dict):
        entry = _entry(document, workload)
        if entry is None:
            return None, None
        by_op = entry.get("requests_by_op", {})
        count = entry["requests"] if ops is None else sum(by_op.get(op, 0) for op in ops)
        return f"{count} {'requests' if ops is None else '/'.join(ops)}", count == 0
    return check


def _both(first, second):
    def check(document: dict):
        (text1, met1), (text2, met2) = first(document), second(document)
        if met1 is None or met2 is None:
            return None, None
        return f"{text1}, {text2}", met1 and met2
    return check


def _close_share(document: dict):
    entry = _entry(document, "close_after_write")
    return (None, None) if entry is None else (f"{entry['median']:.1f} %", entry["median"] < 10)


def _cpu_per_gib_written(document: dict):
    entry = _entry(document, "seq_write")
    gib = document["scale"].get("big_object_mib", 1024) / 1024
    if entry is None or not gib:
        return None, None
    per_gib = entry["cpu_seconds"] / gib
    return f"{per_gib:.2f} CPU-s/GiB", per_gib <= 1.5


def _reread_vs_first(document: dict):
    first, second = _entry(document, "seq_read_1j"), _entry(document, "reread")
    if first is None or second is None:
        return None, None
    ratio = second["median"] / first["median"]
    gets = second.get("requests_by_op", {}).get("GetObject", 0)
    return f"{ratio:.2f} × the first read, {gets} GET", ratio >= 3 and gets == 0


def _level_with_best(document: dict):
    mine = _entry(document, "seq_read_1j")
    others = [e["median"] for c in PEERS if (e := _entry(document, "seq_read_1j", c))]
    if mine is None or not others:
        return None, None
    return f"{mine['median'] / max(others):.2f} × the best peer", mine["median"] >= max(others)


def _cpu_per_gib_read(document: dict):
    mine, theirs = _entry(document, "seq_read_1j"), _entry(document, "seq_read_1j", "s3fs")
    if mine is None or theirs is None:
        return None, None
    return (f"{mine['cpu_seconds']:.2f} vs s3fs {theirs['cpu_seconds']:.2f} CPU-s",
            mine["cpu_seconds"] <= theirs["cpu_seconds"])


TARGETS = [
    ("sequential read, 1 job: ≥ 1.5 × s3fs", _at_least("seq_read_1j", "s3fs", 1.5)),
    ("sequential read, 1 job: ≥ 70 % of the Python GET pipeline", _at_least("seq_read_1j", "python-get", 0.7)),
    ("sequential read, 1 job: ≥ 60 % of the pyfuse3 RAM ceiling", _at_least("seq_read_1j", "ramfs", 0.6)),
    ("sequential read, 4 jobs: ≥ 1.5 × s3fs", _at_least("seq_read_4j", "s3fs", 1.5)),
    ("one sequential reader at least level with the best peer", _level_with_best),
    ("sequential write through close: ≥ 2 × s3fs", _at_least("seq_write", "s3fs", 2)),
    ("close() after a sequential write: < 10 % of the write's time", _close_share),
    ("CPU-seconds per GiB written ≤ 1.5", _cpu_per_gib_written),
    ("second-epoch re-read: ≥ 3 × the first read, 0 GET", _reread_vs_first),
    ("ls -l cold: ≥ 1.5 × s3fs", _at_least("ls_l_cold", "s3fs", 1.5)),
    ("ls -l warm: ≥ 3 × s3fs, no request", _both(_at_least("ls_l_warm", "s3fs", 3), _requests("ls_l_warm", None))),
    ("ls -l after a remount: ≥ 5 × s3fs, no HEAD",
     _both(_at_least("ls_l_remount", "s3fs", 5), _requests("ls_l_remount", ("HeadObject",)))),
    ("ls -l with readdir_optimize: ≥ 10 × s3fs, no HEAD",
     _both(_at_least("ls_l_rdo", "s3fs", 10), _requests("ls_l_rdo", ("HeadObject",)))),
    ("find with readdir_optimize: ≥ 10 × s3fs, no HEAD",
     _both(_at_least("find_rdo", "s3fs", 10), _requests("find_rdo", ("HeadObject",)))),
    ("stat of every entry: ≥ 1.5 × s3fs", _at_least("stat", "s3fs", 1.5)),
    ("find: ≥ 1.5 × s3fs", _at_least("find", "s3fs", 1.5)),
    ("creates (create + delete): ≥ 1.5 × s3fs", _at_least("create_delete", "s3fs", 1.5)),
    ("random 4 KiB reads: ≥ s3fs", _at_least("rand_read_4k", "s3fs", 1)),
    ("random 256 KiB reads: ≥ s3fs", _at_least("rand_read_256k", "s3fs", 1)),
    ("small files, 8 threads reading: ≥ 2 × s3fs", _at_least("small_read", "s3fs", 2)),
    ("time to first byte ≤ s3fs", _at_least("ttfb", "s3fs", 1)),
    ("CPU-seconds of the FUSE process per GiB read ≤ s3fs", _cpu_per_gib_read),
]


def targets(document: dict) -> str:
    """The issue-11 targets this run measured, as a Markdown table: target, measured, met (yes/NO/–)."""
    lines = ["| target (issue 11) | measured | met |", "|---|---|---|"]
    for label, check in TARGETS:
        measured, met = check(document)
        lines.append(f"| {label} | {measured or 'not measured'} | {'–' if met is None else ('yes' if met else 'NO')} |")
    return "\n".join(lines) + "\n"


def chart(document: dict, path: Path) -> None:
    """One panel per workload, one bar per client (median, with min–max error bars)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    workloads = list(document["workloads"])
    clients = _clients(document)
    columns = 4
    rows = (len(workloads) + columns - 1) // columns
    figure, axes = plt.subplots(rows, columns, figsize=(4 * columns, 3 * rows), squeeze=False)
    colors = {"ossmount": "#d62728", "s3fs": "#1f77b4", "rclone": "#2ca02c", "python-get": "#7f7f7f",
              "ramfs": "#bcbd22"}
    for axis, workload in zip(axes.flat, workloads):
        info = document["workloads"][workload]
        names, values, low, high = [], [], [], []
        for client in clients:
            entry = document["results"].get(workload, {}).get(client)
            names.append(client)
            if entry and "median" in entry:
                values.append(entry["median"])
                low.append(entry["median"] - entry["min"])
                high.append(entry["max"] - entry["median"])
            else:
                values.append(0)
                low.append(0)
                high.append(0)
        bars = axis.bar(names, values, yerr=[low, high], color=[colors.get(n, "#999999") for n in names],
                        capsize=3)
        for bar, name, value in zip(bars, names, values):
            if not value:
                status = document["clients"].get(name, {}).get("status")
                axis.text(bar.get_x() + bar.get_width() / 2, 0, "skipped" if status == "skipped" else "n/a",
                          ha="center", va="bottom", fontsize=7, rotation=90)
        better = "higher is better" if info["better"] == "higher" else "lower is better"
        axis.set_title(f"{workload} ({info['unit']}, {better})", fontsize=9)
        axis.tick_params(axis="x", labelsize=7, rotation=30)
    for axis in list(axes.flat)[len(workloads):]:
        axis.set_visible(False)
    figure.suptitle(f"ossmount benchmark {document['date'][:10]} ({'quick' if document['quick'] else 'full'}, "
                    f"median of {document['runs']}, min–max bars)", fontsize=11)
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)


def write_all(document: dict, directory: Path) -> list[Path]:
    """<date>[-quick].json, .md and .png in `directory`; returns their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    stem = document["date"][:10] + ("-quick" if document["quick"] else "")
    json_path, md_path, png_path = (directory / f"{stem}.{ext}" for ext in ("json", "md", "png"))
    json_path.write_text(json.dumps(document, indent=2) + "\n")
    md_path.write_text(markdown(document))
    chart(document, png_path)
    return [json_path, md_path, png_path]
