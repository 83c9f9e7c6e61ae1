"""Shared fixtures and the suite-wide check that no card number is ever logged in clear.

Every log record of the whole run (root logger and uvicorn's, DEBUG and up) is written to one
file; when the session ends, that file is scanned with :func:`tests.pan_scan.find_pans` and any
card number found in clear fails the run.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import pytest

from tests.pan_scan import find_pans

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
_LOGGERS = ("", "uvicorn", "uvicorn.error", "uvicorn.access")
_SUITE_LOG = Path(tempfile.mkdtemp(prefix="palmpay-suite-log-")) / "suite.log"


def shared_dataset(name: str) -> Path:
    """Path of a real dataset under ../shared/data, or skip the test with a clear message."""
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"real dataset {path} is absent (../shared/data is only on dev machines/CI)")
    return path


def pytest_sessionstart(session: pytest.Session) -> None:
    handler = logging.FileHandler(_SUITE_LOG, encoding="utf-8")
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    session.config._palmpay_log_handler = handler  # type: ignore[attr-defined]
    for name in _LOGGERS:
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        if name == "":
            logger.setLevel(logging.DEBUG)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    handler = getattr(session.config, "_palmpay_log_handler", None)
    if handler is None:
        return
    for name in _LOGGERS:
        logging.getLogger(name).removeHandler(handler)
    handler.close()
    pans = find_pans(_SUITE_LOG.read_bytes())
    lines = sum(1 for _ in _SUITE_LOG.open(encoding="utf-8", errors="replace"))
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if pans:
        masked = ", ".join(f"{p[:4]}…{p[-4:]}" for p in pans)
        if reporter:
            reporter.write_line(f"FAILED: card numbers in clear in the suite's log "
                                f"({_SUITE_LOG}): {masked}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    elif reporter:
        reporter.write_line(f"log check: {lines} log lines written during the suite, "
                            "no card number in clear")
