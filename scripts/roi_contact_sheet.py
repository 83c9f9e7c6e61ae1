"""Contact sheet of palm ROIs: a grid of ``palmpay.roi`` outputs from a folder of hand photos.

    .venv/bin/python scripts/roi_contact_sheet.py                      # coep-dev -> docs/
    .venv/bin/python scripts/roi_contact_sheet.py --data DIR --out sheet.png --count 48

Takes the first ``--count`` images (sorted ``<person>/<n>.jpg``, spread over people: photo 1 of
each person first, then photo 2, ...), runs :meth:`PalmRoiExtractor.extract` on each and writes a
grid of the 128x128 ROIs, each labelled with its file name (failures shown as a grey tile with
the status). Also prints the success rate over all images in the folder.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections import Counter
from pathlib import Path

import cv2
import numpy as np

from palmpay.roi import ROI_SIZE, PalmRoiExtractor, RoiResult

__all__ = ["contact_sheet", "main"]

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared/data/coep-dev"
DEFAULT_OUT = REPO / "docs/roi_contact_sheet.png"
COLUMNS = 8
LABEL_HEIGHT = 14


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="<person>/<n>.jpg folder")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="PNG to write")
    parser.add_argument("--count", type=int, default=48, help="ROIs on the sheet")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    paths = sorted(args.data.glob("*/*.jpg"))
    if not paths:
        raise FileNotFoundError(f"no <person>/<n>.jpg images under {args.data}")
    extractor = PalmRoiExtractor()
    results = {path: extractor.extract(cv2.imread(str(path))) for path in paths}
    statuses = Counter(result.status.value for result in results.values())
    ok = statuses.get("ok", 0)
    log.info(
        "ROI success %d/%d = %.1f %% %s", ok, len(paths), 100 * ok / len(paths), dict(statuses)
    )
    # Photo n of every person before photo n+1 of anyone: many people on one sheet.
    shown = sorted(paths, key=lambda p: (p.stem, p.parent.name))[: args.count]
    sheet = contact_sheet([(f"{p.parent.name}/{p.name}", results[p]) for p in shown])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(args.out), sheet, [cv2.IMWRITE_PNG_COMPRESSION, 9]):
        raise OSError(f"could not write {args.out}")
    log.info("wrote %s (%d ROIs)", args.out, len(shown))
    return 0


def contact_sheet(items: list[tuple[str, RoiResult]], columns: int = COLUMNS) -> np.ndarray:
    """Grid of labelled ROI tiles (grayscale uint8)."""
    tile_h = ROI_SIZE + LABEL_HEIGHT
    rows = max(1, -(-len(items) // columns))
    sheet = np.full((rows * tile_h, columns * ROI_SIZE), 255, np.uint8)
    for k, (label, result) in enumerate(items):
        y, x = (k // columns) * tile_h, (k % columns) * ROI_SIZE
        tile = result.roi if result.ok else np.full((ROI_SIZE, ROI_SIZE), 96, np.uint8)
        sheet[y : y + ROI_SIZE, x : x + ROI_SIZE] = tile
        text = label if result.ok else f"{label} {result.status.value}"
        cv2.putText(
            sheet, text, (x + 3, y + tile_h - 3), cv2.FONT_HERSHEY_SIMPLEX, 0.35, 0, 1, cv2.LINE_AA
        )
    return sheet


if __name__ == "__main__":
    sys.exit(main())
