"""``python -m palmpay.bench`` is ``palmpay bench``."""

from __future__ import annotations

import sys

from palmpay.bench import main

__all__: list[str] = []

if __name__ == "__main__":
    sys.exit(main())
