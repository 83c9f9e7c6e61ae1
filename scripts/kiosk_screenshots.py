"""Screenshots of every kiosk screen, taken by the kiosk browser tests in real Chromium.

    .venv/bin/python scripts/kiosk_screenshots.py                  # -> docs/kiosk/*.png
    .venv/bin/python scripts/kiosk_screenshots.py --out /tmp/shots

Runs ``pytest tests/kiosk`` with ``PALMPAY_KIOSK_SCREENSHOTS`` set to the output folder (old
PNGs there are removed first), so the pictures are exactly what the tests saw: the real API
server, synthetic hands on Chromium's fake camera, 640x480 and 1280x720 viewports. Needs
Chromium at /usr/bin/chromium (``apt-get install -y chromium``) or ``PALMPAY_CHROMIUM``.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
from pathlib import Path

__all__ = ["main"]

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "docs" / "kiosk"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for the PNGs")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.png"):
        old.unlink()
    env = {**os.environ, "PALMPAY_KIOSK_SCREENSHOTS": str(out)}
    code = subprocess.call([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                            "tests/kiosk"], cwd=REPO, env=env)
    shots = sorted(p.name for p in out.glob("*.png"))
    log.info("%d screenshots in %s: %s", len(shots), out, ", ".join(shots))
    if code != 0:
        log.error("the kiosk tests failed (exit %d): screenshots may be incomplete", code)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
