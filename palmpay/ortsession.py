"""One place that opens onnxruntime sessions with the providers and threads from settings."""

from __future__ import annotations

import logging
from pathlib import Path

import onnxruntime as ort

from palmpay.config import Settings, get_settings

__all__ = ["open_session"]

log = logging.getLogger(__name__)


def open_session(path: Path, settings: Settings | None = None) -> ort.InferenceSession:
    """Open ``path`` as an inference session using ``settings.providers`` and thread count."""
    settings = settings or get_settings()
    options = ort.SessionOptions()
    options.intra_op_num_threads = settings.intra_op_threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    available = set(ort.get_available_providers())
    providers = [p for p in settings.providers if p in available] or ["CPUExecutionProvider"]
    log.debug("opening %s with %s", path, providers)
    return ort.InferenceSession(str(path), sess_options=options, providers=providers)
