"""Run ``palmpay eval`` on the real development sets and write the results to docs/eval.md.

Each run is the exact command a user types; its JSON output and DET plot go into the report.
Needs ../shared/data (the read-only development sets); run it with ``make eval``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import shlex
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path("../shared/data")
RUNS = [
    ("tongji-dev", ["--roi", "given", "--protocol", "sessions"], "det_tongji.png",
     "Tongji contactless ROIs, session 2 probes vs session 1, every image pair"),
    ("coep-dev", ["--roi", "detect"], "det_coep.png",
     "COEP full-hand photos, palm ROI detected by our pipeline, every image pair"),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "eval.md")
    args = parser.parse_args()
    lines = [
        "# Accuracy on the development sets",
        "",
        f"Made by `make eval` (`scripts/eval_docs.py`) on {datetime.date.today()}, "
        f"{platform.machine()}, {platform.python_version()}. Rates are fractions; "
        "`seconds_per_image` is ROI + embedding wall time per image on both cores.",
        "",
    ]
    for name, extra, plot, what in RUNS:
        dataset = DATA / name
        if not (REPO / dataset).is_dir():
            print(f"skipping {name}: {dataset} is absent", file=sys.stderr)
            continue
        command = ["palmpay", "eval", str(dataset), *extra, "--json", "--no-progress",
                   "--plot", f"docs/{plot}"]
        result = subprocess.run([str(REPO / ".venv/bin/palmpay"), *command[1:]], cwd=REPO,
                                check=True, capture_output=True, text=True)
        report = json.loads(result.stdout)
        lines += [
            f"## {name}",
            "",
            what + ".",
            "",
            "```",
            "$ " + shlex.join(command),
            json.dumps(report, indent=2),
            "```",
            "",
            f"EER {report['eer']:.4%}, FRR at FAR 1e-3 {report['frr_at_far_1e-3']:.4%}, "
            f"FRR at FAR 1e-4 {report['frr_at_far_1e-4']:.4%}, rank-1 {report['rank1']:.4%}, "
            f"ROI found in {1 - report['failed'] / report['images']:.2%} of "
            f"{report['images']} images.",
            "",
            f"![DET {name}]({plot})",
            "",
        ]
    args.out.write_text("\n".join(lines))
    print(args.out.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
