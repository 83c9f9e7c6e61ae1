"""Evaluate the pipeline on the real development sets and write docs/eval.md (``make eval``).

Each section is what ``palmpay eval ... --json --plot`` prints for that set (the same
:func:`palmpay.evaluate.evaluate` call), plus the operating point of the model's calibrated
threshold — the number that matters for live decisions. Needs ../shared/data.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import shlex
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from palmpay.evaluate import evaluate, plot_det  # noqa: E402

DATA = Path("../shared/data")
SAME_PALM_COEP = {"153": "077", "157": "155"}  # label noise found by the matcher (calibrate.py)
RUNS = [
    ("tongji-dev", "given", "sessions", "det_tongji.png", None,
     "Tongji contactless ROIs, session-2 probes vs session-1 gallery, every image pair."),
    ("coep-dev", "detect", "all-pairs", "det_coep.png", None,
     "COEP full-hand photos, palm ROI detected by our pipeline, every image pair."),
    ("coep-dev", "detect", "all-pairs", "det_coep_merged.png", SAME_PALM_COEP,
     "The same with folders 153=077 and 157=155 merged: each pair holds one hand under two "
     "labels (all 16 cross pairs score like genuine pairs, two images are near-identical), "
     "which is what pins the FAR-1e-4 point above on 29,280 impostor pairs. Python API only "
     "(`evaluate(..., aliases=...)`), as `models/calibrate.py` uses it."),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "eval.md")
    args = parser.parse_args()
    lines = [
        "# Accuracy on the development sets",
        "",
        f"Made by `make eval` (`scripts/eval_docs.py`) on {datetime.date.today()}, "
        f"{platform.machine()}, Python {platform.python_version()}, 2 cores. Rates are "
        "fractions; `seconds_per_image` is ROI + embedding wall time per image on both cores.",
        "",
    ]
    for name, roi, protocol, plot, aliases, what in RUNS:
        dataset = DATA / name
        if not (REPO / dataset).is_dir():
            print(f"skipping {name}: {dataset} is absent", file=sys.stderr)
            continue
        scores = evaluate(REPO / dataset, roi=roi, protocol=protocol, progress=False,
                          aliases=aliases)
        plot_det(scores, REPO / "docs" / plot, f"{name} ({protocol}, roi {roi})"
                 + (" merged" if aliases else ""))
        report = scores.report.as_dict()
        command = ["palmpay", "eval", str(dataset), "--roi", roi, "--protocol", protocol,
                   "--json", "--plot", f"docs/{plot}"]
        far, frr = scores.at_threshold
        lines += [
            f"## {name}" + (" (label noise merged)" if aliases else ""),
            "",
            what,
            "",
            "```",
            ("# equivalent of (plus aliases=...):\n" if aliases else "") + "$ "
            + shlex.join(command),
            json.dumps(report, indent=2),
            "```",
            "",
            f"- EER {report['eer']:.4%}; FRR at FAR 1e-3 {report['frr_at_far_1e-3']:.4%}; "
            f"FRR at FAR 1e-4 {report['frr_at_far_1e-4']:.4%}; rank-1 {report['rank1']:.4%}",
            f"- ROI found in {1 - report['failed'] / report['images']:.2%} of "
            f"{report['images']} images",
            f"- at the model's threshold {scores.threshold:.4f}: FAR {far:.2e}, FRR {frr:.4%}",
            "",
            f"![DET {name}]({plot})",
            "",
        ]
    args.out.write_text("\n".join(lines))
    print(args.out.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
