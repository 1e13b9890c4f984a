"""benchmarks/server.py runs end to end (small object) and reports every path as a ratio to the raw read
measured in the same run; the README quotes the ratios of a full 1 GiB run. No timing is asserted."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_server_benchmark_reports_ratios_to_raw_read(tmp_path):
    output = tmp_path / "bench.json"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "server.py"), "--size-mib", "4", "--runs", "1",
                    "--data-dir", str(tmp_path), "--output", str(output)], check=True, capture_output=True,
                   timeout=120)
    result = json.loads(output.read_text())
    assert set(result["ratio_to_raw_read"]) == {"get", "get_httpclient", "put", "put_fast_etag"}
    assert all(value > 0 for value in result["ratio_to_raw_read"].values())
    assert result["median_mib_per_s"]["raw_read"] > 0
    readme = (ROOT / "README.md").read_text()
    assert "ratio to raw read" in readme and "benchmarks/server.py" in readme


def test_parallel_server_benchmark_runs_and_the_readme_quotes_it(tmp_path):
    output = tmp_path / "parallel.json"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "server_parallel.py"), "--size-mib", "2",
                    "--streams", "2", "--clients", "2", "--small-requests", "60", "--runs", "1",
                    "--data-dir", str(tmp_path), "--output", str(output)], check=True, capture_output=True,
                   timeout=300)
    result = json.loads(output.read_text())
    assert set(result["median"]) == {"get_mib_s", "put_mib_s", "mixed_mib_s", "small_requests_s", "small_cpu_us"}
    assert all(value > 0 for value in result["median"].values())
    assert "benchmarks/server_parallel.py" in (ROOT / "README.md").read_text()
