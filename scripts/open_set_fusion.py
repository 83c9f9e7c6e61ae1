"""Which presentation fusion helps against strangers? Writes ``docs/open_set_fusion.md``.

    python scripts/open_set_fusion.py [--data ../shared/data]

On tongji-dev (ROIs given): palms 000–149 enrolled from session 1; genuine presentations are
every 3-image combination of an enrolled palm's session-2 images (18,000); stranger
presentations every 3-image combination of one session of palms 150–299 (36,000). For each
rule of turning 3 frames' per-identity scores into one presentation score, the FNIR at fixed
per-identity impostor rates (5.4 M stranger × identity scores); then, at the stranger level,
what requiring the frames' own top-1 identities to agree removes.
"""

from __future__ import annotations

import argparse
import sys
from datetime import date
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from palmpay import openset  # noqa: E402
from palmpay.capture import read_image  # noqa: E402
from palmpay.dataset import scan  # noqa: E402
from palmpay.match import code_scores  # noqa: E402
from palmpay.pipeline import Pipeline  # noqa: E402

RATES = (1e-4, 1e-5, 1e-6)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "open_set_fusion.md")
    args = parser.parse_args(argv)
    samples = [s for s in scan(args.data / "tongji-dev") if s.session in (1, 2)]
    pipeline = Pipeline()
    templates = pipeline.templates([pipeline.given(read_image(s.path)) for s in samples])
    codes = np.stack([t.code for t in templates])
    labels = np.asarray([s.palm for s in samples])
    sessions = np.asarray([s.session for s in samples])
    palms = sorted(set(labels.tolist()))
    enrolled = palms[: len(palms) // 2]
    gallery = (sessions == 1) & np.isin(labels, enrolled)
    scores = code_scores(codes, codes[gallery], max_shift=pipeline.embedder.max_shift)
    frame = openset.frame_identity_scores(scores, labels[gallery].tolist(), enrolled)
    groups = openset.presentations(labels.tolist(), sessions.tolist(), 3, every=True)
    owner = labels[groups[:, 0]]
    genuine = groups[np.isin(owner, enrolled) & (sessions[groups[:, 0]] == 2)]
    truth = np.asarray([enrolled.index(p) for p in labels[genuine[:, 0]]])
    strangers = groups[~np.isin(owner, enrolled)]
    z = (frame - frame.mean(1, keepdims=True)) / frame.std(1, keepdims=True)
    rules = {
        "one frame": lambda m, g: m[g[:, 0]],
        "mean of 3 frames (used)": lambda m, g: m[g].mean(1),
        "min of 3 frames": lambda m, g: m[g].min(1),
        "max of 3 frames": lambda m, g: m[g].max(1),
    }
    rows = []
    for name, rule in [*rules.items(),
                       ("mean of T-normalised scores", lambda m, g: z[g].mean(1))]:
        gen = rule(frame, genuine)[np.arange(len(genuine)), truth]
        imp = np.sort(rule(frame, strangers).ravel())
        cells = []
        for rate in RATES:
            k = int(len(imp) * rate)
            threshold = imp[len(imp) - k]
            cells.append(f"{np.mean(gen < threshold):.2%} (t {threshold:.3f}, {k} scores)")
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    fused_s = frame[strangers].mean(1)
    agree_s = (frame[strangers].argmax(2) == fused_s.argmax(1)[:, None]).sum(1)
    best_s = fused_s.max(1)
    fused_g = frame[genuine].mean(1)
    agree_g = (frame[genuine].argmax(2) == fused_g.argmax(1)[:, None]).sum(1)
    best_g = fused_g.max(1)
    agree_rows = []
    for t in (0.61, 0.62, 0.624, 0.63, 0.64, 0.65):
        a = [int(((best_s >= t) & (agree_s >= need)).sum()) for need in (1, 2, 3)]
        g = [float(np.mean(~((best_g >= t) & (agree_g >= need)))) for need in (1, 2, 3)]
        agree_rows.append(f"| {t} | {a[0]} | {a[1]} | {a[2]} | {g[0]:.2%} | {g[1]:.2%} | "
                          f"{g[2]:.2%} |")
    text = "\n".join([
        "# Open-set fusion: which presentation score helps against strangers",
        "",
        f"Made by `python scripts/open_set_fusion.py` on {date.today().isoformat()}; "
        "see docs/open_set.md.",
        "",
        f"tongji-dev, ROIs given: {len(enrolled)} palms enrolled from session 1 "
        f"({int(gallery.sum())} samples); {len(genuine):,} genuine presentations (every "
        f"3-image session-2 combination), {len(strangers):,} stranger presentations of "
        f"{len(palms) - len(enrolled)} never-enrolled palms.",
        "",
        "## FNIR at a fixed per-identity impostor rate",
        "",
        "| presentation score | " + " | ".join(f"FNIR at {r:.0e}" for r in RATES) + " |",
        "|---|---|---|---|",
        *rows,
        "",
        "## Top-1 agreement across the 3 frames (mean fusion)",
        "",
        "Strangers accepted (of all stranger presentations) and genuine FNIR, when at least 1, "
        "2 or 3 frames' own best identity must be the fused best.",
        "",
        "| threshold | strangers, any | ≥ 2 agree | 3 agree | FNIR, any | ≥ 2 agree | 3 agree |",
        "|---|---|---|---|---|---|---|",
        *agree_rows,
        "",
    ])
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
