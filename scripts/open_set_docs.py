"""Run the open-set protocol on the development sets; write docs/open_set_eval.md and
docs/open_set.png.

    python scripts/open_set_docs.py [--data ../shared/data]

Each section is what ``palmpay eval DATASET --protocol open-set`` prints for that set (the same
:func:`palmpay.evaluate_open_set.evaluate_open_set` call); the plot is tongji-dev's. Needs
../shared/data.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import shlex
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from palmpay.evaluate_open_set import (  # noqa: E402
    FIXED,
    evaluate_open_set,
    plot_open_set,
    report_table,
)

DATA = Path("../shared/data")
SAME_PALM_COEP = {"153": "077", "157": "155"}  # label noise found by the matcher (calibrate.py)
PLOT = "open_set.png"
RUNS = [
    ("tongji-dev", "given", None, PLOT,
     "Tongji contactless ROIs: palms 000–149 enrolled from their 10 session-1 images; genuine "
     "presentations are their session-2 images in groups of 3 (450); strangers are palms "
     "150–299, 1,000 presentations of 3 images of one session of one palm."),
    ("coep-dev", "detect", SAME_PALM_COEP, None,
     "COEP full-hand photos, palm ROI detected by our pipeline, folders 153=077 and 157=155 "
     "merged (label noise). The first 29 palms are enrolled from their first image, their "
     "last 3 images are the genuine presentation; each of the 30 other palms gives one "
     "stranger presentation (its first 3 images). Far too few strangers to measure an FPIR: "
     "this checks that the detected-ROI path makes no mistake at the operating point."),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "open_set_eval.md")
    args = parser.parse_args()
    lines = [
        "# Open-set identification on the development sets",
        "",
        f"Made by `python scripts/open_set_docs.py` on {datetime.date.today()}, "
        f"{platform.machine()}, Python {platform.python_version()}. Protocol: "
        "`palmpay/evaluate_open_set.py` (its docstring); the tail model and its held-out "
        "check: docs/open_set_tail.md. Each presentation is 3 frames, each frame is scored "
        "against every enrolled sample (the exhaustive search), the fused score is the mean "
        "over the frames of each identity's best sample, and a presentation is accepted as its "
        "best identity when that reaches the threshold. *operating point*: the threshold of "
        "`OperatingPoint.threshold(N)` for the gallery's N samples (target FPIR and max FNIR "
        "from the settings); *fixed*: the model's pair threshold, the rule before the "
        "operating point, whose FPIR grows with N. FNIR counts every genuine presentation not "
        "accepted as its own identity (rejected or mis-identified).",
        "",
    ]
    for name, roi, aliases, plot, what in RUNS:
        dataset = args.data / name
        if not (REPO / dataset).is_dir():
            print(f"skipping {name}: {dataset} is absent", file=sys.stderr)
            continue
        report = evaluate_open_set(REPO / dataset, roi=roi, aliases=aliases)
        command = ["palmpay", "eval", str(dataset), "--roi", roi, "--protocol", "open-set"]
        if plot:
            plot_open_set(report, REPO / "docs" / plot)
            command += ["--plot", f"docs/{plot}"]
        fixed = report.rule(FIXED)
        lines += [
            f"## {name} (roi {roi})",
            "",
            what,
            "",
            "```",
            ("# equivalent of (plus aliases=...):\n" if aliases else "") + "$ "
            + shlex.join(command),
            "```",
            "",
            *report_table(report),
            "",
            f"At the fixed threshold {report.fixed_threshold:.4f} the measured FPIR goes "
            + ", ".join(f"{g.fpir:.2%} at N = {g.samples}" for g in fixed)
            + " (model: " + ", ".join(f"{g.predicted_fpir:.2%}" for g in fixed) + ").",
            "",
        ]
        if plot:
            lines += [
                f"![FPIR against N, {name}]({plot})",
                "",
                "Red: FPIR at the fixed threshold, measured (95 % Clopper–Pearson intervals; a "
                "▼ is the upper bound where no stranger was accepted) and as the tail model "
                "predicts it, FPIR(t, N) = 1 − (1 − r(t))^N, up to a million samples. Blue: "
                "the operating point keeps the modelled FPIR flat at its target (1e-4, dashed; "
                "1e-5, dotted) by raising the threshold with N; with only "
                f"{report.overall.strangers:,} strangers its measured points can only show "
                "that FPIR is below about 3 / strangers. Green: N_safe, the largest "
                "gallery whose threshold still keeps FNIR within the ceiling.",
                "",
            ]
    args.out.write_text("\n".join(lines))
    print(args.out.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
