"""Smoke test of ``scripts/bench.py`` (the program behind ``make bench``).

Runs ``bench.py --quick`` in a subprocess and checks that the Markdown report it writes has every
section, its tables and numbers. No timing is asserted: the numbers depend on the machine.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SECTIONS = [
    "## Machine",
    "## Per-stage latency",
    "## 1:N search",
    "## End-to-end live path",
    "## Exact vs approximate search",
]
STAGES = [
    "assess_quality",
    "PalmDetector.detect",
    "HandLandmarker.run",
    "palm_roi",
    "PalmRoiExtractor.extract",
    "PalmRoiExtractor.track",
    "PalmEmbedder.embed",
]
NUMBER = re.compile(r"^\d[\d,]*(\.\d+)?$")


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> str:
    out = tmp_path_factory.mktemp("bench") / "bench.md"
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "bench.py"), "--quick", "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = out.read_text()
    assert proc.stdout.strip() == text.strip(), "the report is printed as well as written"
    return text


def section(text: str, heading: str) -> str:
    start = text.index(heading)
    following = [text.index(h) for h in SECTIONS if text.find(h) > start]
    return text[start:min(following, default=len(text))]


def table_rows(block: str) -> list[list[str]]:
    """Body rows of the Markdown tables in ``block`` (header and separator rows dropped)."""
    rows = [[c.strip() for c in line.strip().strip("|").split("|")]
            for line in block.splitlines() if line.startswith("|")]
    return [r for r in rows[2:] if not all(set(c) <= set("-:") for c in r)]


def numeric_cells(row: list[str]) -> list[float]:
    return [float(c.replace(",", "")) for c in row if NUMBER.match(c)]


def test_report_has_every_section_in_order(report: str) -> None:
    positions = [report.index(h) for h in SECTIONS]
    assert positions == sorted(positions)
    assert "scripts/bench.py --quick --out" in report  # the command that produced it


def test_machine_facts(report: str) -> None:
    facts = dict(r[:2] for r in table_rows(section(report, "## Machine")))
    for key in ("CPU", "cores", "onnxruntime", "faiss", "numpy", "date"):
        assert facts.get(key), f"machine fact {key!r} missing"
    assert re.match(r"\d{4}-\d\d-\d\d", facts["date"])


def test_stage_latencies_are_numbers(report: str) -> None:
    rows = table_rows(section(report, "## Per-stage latency"))
    for stage in STAGES:
        matching = [r for r in rows if stage in r[0]]
        assert matching, f"no row for {stage}"
        values = numeric_cells(matching[0])
        assert len(values) == 3 and all(v > 0 for v in values), matching[0]


def test_search_rows_per_gallery(report: str) -> None:
    rows = table_rows(section(report, "## 1:N search"))
    sizes = [numeric_cells(r)[0] for r in rows]
    assert len(rows) >= 2 and sizes == sorted(sizes)
    for row in rows:
        assert len(numeric_cells(row)) == 7 and all(v > 0 for v in numeric_cells(row)), row


def test_end_to_end_row(report: str) -> None:
    rows = table_rows(section(report, "## End-to-end live path"))
    assert len(rows) == 1
    values = numeric_cells(rows[0])
    assert len(values) == 4 and all(v > 0 for v in values)


def test_exact_vs_approximate(report: str) -> None:
    rows = table_rows(section(report, "## Exact vs approximate search"))
    assert rows[0][0].startswith("Flat") and len(rows) >= 2
    assert any("IVF" in r[0] for r in rows[1:])
    for row in rows:
        values = numeric_cells(row)
        assert len(values) == 7, row
        rates = values[3:]  # recall and genuine-in-shortlist, two query bands
        assert all(0.0 <= v <= 1.0 for v in rates), row
    assert numeric_cells(rows[0])[3:] == [1.0, 1.0, 1.0, 1.0]  # exact search against itself


def test_http_bench_quick_smoke(tmp_path):
    """`scripts/bench_api.py --quick` runs end to end over HTTP and writes its table (no timing
    is asserted: benchmarks measure, tests check that they work)."""
    out = tmp_path / "bench_api.md"
    subprocess.run([sys.executable, str(REPO / "scripts" / "bench_api.py"), "--quick", "--out",
                    str(out)], check=True, capture_output=True, text=True, timeout=300)
    report = out.read_text()
    assert "| SQLite | `POST /v1/payments`, 4 frames, enrolled palm → succeeded |" in report
    assert "palm_not_recognised" in report
