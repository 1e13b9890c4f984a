"""CPU time and peak memory of a process tree, from /proc (Linux), sans dependencies.

`ProcessMeter(pid)` resets the tree's peak RSS (`echo 5 > /proc/PID/clear_refs`, Linux ≥ 4.0) and records its
CPU time at the start of a job; `stop()` returns CPU-seconds (utime + stime of the process and its threads, plus
its live descendants) spent since then and the peak RSS (VmHWM, MiB) the largest process of the tree reached."""

from __future__ import annotations

import os
from dataclasses import dataclass

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def parse_stat(text: str) -> tuple[int, float]:
    """(ppid, utime + stime in seconds) from the text of /proc/PID/stat (the command may hold spaces and ')')."""
    fields = text[text.rindex(")") + 2:].split()
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def parse_hwm_kib(status_text: str) -> int:
    """VmHWM in KiB from /proc/PID/status text (0 if absent, e.g. a zombie)."""
    for line in status_text.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return None


def process_tree(root: int) -> list[int]:
    """`root` and its live descendants."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            text = _read(f"/proc/{name}/stat")
            if text:
                children.setdefault(parse_stat(text)[0], []).append(int(name))
    tree, stack = [], [root]
    while stack:
        pid = stack.pop()
        tree.append(pid)
        stack.extend(children.get(pid, []))
    return tree


def tree_cpu_seconds(root: int) -> float:
    total = 0.0
    for pid in process_tree(root):
        text = _read(f"/proc/{pid}/stat")
        if text:
            total += parse_stat(text)[1]
    return total


@dataclass
class Usage:
    cpu_seconds: float
    peak_rss_mib: float


class ProcessMeter:
    def __init__(self, pid: int):
        self.pid = pid
        for member in process_tree(pid):
            try:
                with open(f"/proc/{member}/clear_refs", "w") as f:
                    f.write("5")
            except OSError:
                pass
        self._cpu = tree_cpu_seconds(pid)

    def stop(self) -> Usage:
        peak = max((parse_hwm_kib(_read(f"/proc/{pid}/status") or "") for pid in process_tree(self.pid)), default=0)
        return Usage(round(tree_cpu_seconds(self.pid) - self._cpu, 3), round(peak / 1024, 1))
