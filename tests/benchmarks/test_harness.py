"""benchmarks/run itself (nothing here is timed): a tiny run produces valid JSON, Markdown and PNG, with every client
either measured or marked skipped, ratios computed from the medians, and the README quoting the latest table."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import report  # noqa: E402

CLIENTS = {"ossmount", "s3fs", "rclone", "python-get", "ramfs"}
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the benchmark drops caches and mounts: root only")


def run_harness(tmp_path: Path, *args: str) -> dict:
    output = tmp_path / "results"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "harness.py"), "--output-dir", str(output),
                           *args], capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    [json_path] = output.glob("*.json")
    document = json.loads(json_path.read_text())
    assert json_path.with_suffix(".png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert json_path.with_suffix(".md").read_text() == report.markdown(document)
    document["_stdout"] = done.stdout
    return document


def check_document(document: dict, workloads: list[str]) -> None:
    assert set(document["clients"]) == CLIENTS
    for name, info in document["clients"].items():
        assert info["status"] in ("measured", "skipped"), name
        if info["status"] == "skipped":
            assert info["reason"]
    assert list(document["workloads"]) == workloads
    for workload in workloads:
        for client in ("ossmount", "s3fs", "rclone"):
            entry = document["results"][workload].get(client)
            if document["clients"][client]["status"] == "measured":
                assert entry is not None and "error" not in entry, (workload, client, entry)
                assert entry["min"] <= entry["median"] <= entry["max"] and len(entry["runs"]) == document["runs"]
                assert entry["requests"] > 0 or workload == "ls_l_warm"
                assert entry["cpu_seconds"] >= 0 and entry["peak_rss_mib"] > 0
    assert document["ratios"] == report.ratios(document)


def test_tiny_run_measures_or_skips_every_client(tmp_path):
    workloads = ["seq_read_1j", "ttfb", "ls_l_cold", "ls_l_warm"]
    document = run_harness(tmp_path, "--quick", "--scale", "0.005", "--workloads", ",".join(workloads))
    check_document(document, workloads)
    assert document["runs"] == 3 and document["quick"]
    # a progress line per run of each job
    assert document["_stdout"].count("seq_read_1j    run ") >= 3 * 4
    assert document["results"]["ls_l_warm"]["ossmount"]["requests"] == 0  # warm: all from the caches
    assert "ossmount/s3fs" in document["ratios"]["seq_read_1j"]
    assert document["results"]["seq_read_1j"]["python-get"]["median"] > 0
    assert document["server"]["etag"] == "md5" and document["server"]["etag_is_md5"]


def test_server_etag_fast_is_passed_to_the_server_and_named_in_the_report(tmp_path):
    document = run_harness(tmp_path, "--quick", "--scale", "0.005", "--workloads", "ttfb", "--clients", "ossmount",
                           "--server-etag", "fast")
    assert document["server"]["etag"] == "fast" and not document["server"]["etag_is_md5"]
    assert "`ossmount serve --etag fast`" in report.markdown(document)


def test_missing_peer_is_reported_as_skipped(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_S3FS", "/nonexistent/s3fs")
    monkeypatch.setenv("BENCH_RCLONE", "/nonexistent/rclone")
    document = run_harness(tmp_path, "--quick", "--scale", "0.005", "--workloads", "ttfb",
                           "--clients", "ossmount,s3fs,rclone,python-get,ramfs")
    assert document["clients"]["s3fs"]["status"] == "skipped"
    assert document["clients"]["rclone"]["status"] == "skipped"
    assert "s3fs" not in document["results"]["ttfb"] and "ossmount/s3fs" not in document["ratios"].get("ttfb", {})
    assert "skipped" in report.markdown(document)


def test_ratios_are_speed_ratios():
    document = {"workloads": {"r": {"better": "higher"}, "t": {"better": "lower"}},
                "results": {"r": {"ossmount": {"median": 200}, "s3fs": {"median": 100}},
                            "t": {"ossmount": {"median": 1.0}, "s3fs": {"median": 3.0}, "ramfs": {"error": "x"}}}}
    assert report.ratios(document) == {"r": {"ossmount/s3fs": 2.0}, "t": {"ossmount/s3fs": 3.0}}


def test_targets_table_says_met_only_when_the_figures_meet_the_target():
    document = {"scale": {"big_object_mib": 1024},
                "workloads": {"seq_read_1j": {"better": "higher"}, "reread": {"better": "higher"},
                              "ls_l_warm": {"better": "lower"}, "seq_write": {"better": "higher"}},
                "results": {"seq_read_1j": {"ossmount": {"median": 300, "cpu_seconds": 2.0},
                                            "s3fs": {"median": 100, "cpu_seconds": 1.0}},
                            "reread": {"ossmount": {"median": 1200, "requests": 1,
                                                    "requests_by_op": {"HeadObject": 1}}},
                            "ls_l_warm": {"ossmount": {"median": 1.0, "requests": 2,
                                                       "requests_by_op": {"ListObjectsV2": 2}},
                                          "s3fs": {"median": 4.0}},
                            "seq_write": {"ossmount": {"median": 50, "cpu_seconds": 1.6}}}}
    document["ratios"] = report.ratios(document)
    rows = {line.split(" | ")[0].lstrip("| "): line for line in report.targets(document).splitlines()[2:]}
    assert rows["sequential read, 1 job: ≥ 1.5 × s3fs"].endswith("| 3.00 × | yes |")
    assert rows["second-epoch re-read: ≥ 3 × the first read, 0 GET"].endswith("| 4.00 × the first read, 0 GET | yes |")
    assert rows["ls -l warm: ≥ 3 × s3fs, no request"].endswith("| 4.00 ×, 2 requests | NO |")  # fast, not free
    assert rows["CPU-seconds per GiB written ≤ 1.5"].endswith("| 1.60 CPU-s/GiB | NO |")
    assert rows["CPU-seconds of the FUSE process per GiB read ≤ s3fs"].endswith("| NO |")
    assert rows["random 4 KiB reads: ≥ s3fs"].endswith("| not measured | – |")


@pytest.mark.benchmark
def test_quick_run_of_every_workload(tmp_path):
    """The whole --quick set at its own scale (minutes): `pytest -m benchmark`."""
    document = run_harness(tmp_path, "--quick")
    from harness import QUICK_WORKLOADS
    check_document(document, QUICK_WORKLOADS)


def test_readme_shows_the_latest_table_and_chart():
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Performance"):]
    assert "benchmarks/run" in section and "--quick" in section
    results = sorted((ROOT / "benchmarks" / "results").glob("20*.json"))
    assert results, "a run's JSON is committed"
    latest = json.loads(results[-1].read_text())
    assert f"benchmarks/results/{results[-1].stem}.png" in section
    assert (ROOT / "benchmarks" / "results" / f"{results[-1].stem}.png").exists()
    for ratio in latest["ratios"]["seq_read_1j"].values():
        assert f"{ratio:.2f}" in section
