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
             f"{m.get('load_average_at_end', '?')} at end. Scale: {document['scale']}.", "",
             document["note"], "",
             "| workload | unit | " + " | ".join(clients) + " | " + " | ".join(ratio_names) + " |",
             "|---|---|" + "---|" * (len(clients) + len(ratio_names))]
    for workload, info in document["workloads"].items():
        row = [workload, info["unit"]] + [_cell(document, workload, c) for c in clients]
        rates = document.get("ratios", {}).get(workload, {})
        row += [f"{rates[name]:.2f}" if name in rates else "–" for name in ratio_names]
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "Ratios are of speeds: above 1 means ossmount is faster. Per run of the median figure: requests "
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
