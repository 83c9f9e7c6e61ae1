"""Palm ROI → template, with the training-free Gabor competitive-coding model ``compcode.onnx``.

A :class:`Template` holds two things computed by one ONNX pass (``models/build_compcode.py``):

``vector``
    float32 (D,), unit L2 norm: overlapping block histograms of the winning Gabor orientation
    (CompCode), centred. Compared by **cosine similarity in [-1, 1]** (= FAISS inner product).
    It is only mildly shift tolerant and is used **only to shortlist** candidates for a 1:N
    search; it never decides a match.

``code``
    uint8 packed bits (B,): for every cell of the 32×32 code grid and each of the 6 Gabor
    orientations, whether the (cell-averaged) negative-Gabor response is positive — the binary
    orientation co-occurrence vector (BOCV, Guo et al. 2009), the 6-bit generalisation of the
    3-bit CompCode. The bits are laid out cell-major (row, column, orientation), so a shift of
    the code grid is a shift of whole 6-bit groups. Compared by
    :func:`palmpay.match.code_scores`, a
    **similarity in [0, 1]** (1 − normalised Hamming distance, maximised over small
    translations; 1 = identical, ≈0.5 for unrelated palms). **This is the decision score**: a
    match is declared when it is ≥ ``PalmEmbedder.meta["threshold"]``, chosen at a fixed
    false-accept rate by ``models/calibrate.py`` and stored in ``models/compcode.json``.

Why the sign bits and not the 3-bit "which orientation won" code: on the Tongji sessions
protocol (all 9M image pairs, ±3-cell shift search) the 3-bit code gives EER ≈ 0.27 % and the
6-bit code ≈ 0.13 %, at twice the matching cost. The winning orientation is still computed (it
feeds ``vector``).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from palmpay.config import Settings, get_settings
from palmpay.ortsession import open_session

__all__ = [
    "Template",
    "PalmEmbedder",
    "CalibrationError",
    "DEFAULT_MAX_SHIFT",
    "BITS_PER_CELL",
]

log = logging.getLogger(__name__)

#: Translation search range of :func:`palmpay.match.code_scores`, in code cells (one cell =
#: 4 ROI pixels).
#: ±3 cells = ±12 px = ±9 % of the ROI: absorbs residual ROI misalignment. A larger range
#: tolerates worse alignment but lifts impostor scores (more chances to match by luck) and
#: costs (2s+1)² matrix products. The calibrated value is ``PalmEmbedder.meta["max_shift"]``.
DEFAULT_MAX_SHIFT = 3
#: Bits per code cell: one sign bit per Gabor orientation.
BITS_PER_CELL = 6


class CalibrationError(RuntimeError):
    """``compcode.json`` is missing, incomplete, or was calibrated for a different model file."""


@dataclass(frozen=True)
class Template:
    """One palm sample. ``vector``: float32 (D,) unit norm; ``code``: uint8 packed bits (B,)."""

    vector: np.ndarray
    code: np.ndarray


class PalmEmbedder:
    """Runs ``compcode.onnx`` on 128×128 grey palm ROIs.

    :param settings: where to find the model (``settings.model_path(settings.embedder)``), the
        onnxruntime providers and thread count. Defaults to the process settings.
    :param path: explicit model path, overriding ``settings``.
    :param load_meta: read the calibration ``<model>.json`` beside the model into :attr:`meta`
        and check that its ``sha256`` matches the model file (raises :class:`CalibrationError`
        if not). ``models/calibrate.py`` passes ``False`` because it is about to write it; with
        ``False`` (or when the file is absent) :attr:`meta` is ``{}`` and :attr:`threshold`
        raises.

    Input convention: the ROI is fed as ``uint8 / 255`` (float32, N×1×128×128). The model's
    filters sum to zero and the code only uses signs and arg-maxes, so any grey-level map
    ``a·x + b`` with ``a > 0`` gives the same template; no further normalisation is needed.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        path: Path | None = None,
        *,
        load_meta: bool = True,
    ) -> None:
        settings = settings or get_settings()
        self.path = Path(path) if path is not None else settings.model_path(settings.embedder)
        if not self.path.is_file():
            raise FileNotFoundError(f"embedding model {self.path} not found")
        self.session = open_session(self.path, settings)
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.input_size = tuple(int(s) for s in inp.shape[2:4])
        outputs = {o.name: o for o in self.session.get_outputs()}
        for name in ("vector", "sign"):
            if name not in outputs:
                raise ValueError(f"{self.path} has no output {name!r} (outputs: {list(outputs)})")
        self.dim = int(outputs["vector"].shape[1])
        _, bits, grid_h, grid_w = outputs["sign"].shape
        if bits != BITS_PER_CELL:
            raise ValueError(f"{self.path}: {bits} code bits per cell, expected {BITS_PER_CELL}")
        self.grid = (int(grid_h), int(grid_w))
        self.code_bytes = (self.grid[0] * self.grid[1] * BITS_PER_CELL + 7) // 8
        self.meta: dict = self._load_meta() if load_meta else {}

    def _load_meta(self) -> dict:
        meta_path = self.path.with_suffix(".json")
        if not meta_path.is_file():
            log.warning("no calibration %s; PalmEmbedder.threshold is unavailable", meta_path)
            return {}
        meta = json.loads(meta_path.read_text())
        digest = hashlib.sha256(self.path.read_bytes()).hexdigest()
        if meta.get("sha256") != digest:
            raise CalibrationError(
                f"{meta_path} was calibrated for sha256 {meta.get('sha256')}, but {self.path} "
                f"has {digest}; rerun models/calibrate.py"
            )
        return meta

    @property
    def threshold(self) -> float:
        """Decision threshold on :func:`palmpay.match.code_scores` (accept when score ≥
        threshold)."""
        if "threshold" not in self.meta:
            raise CalibrationError(f"no calibrated threshold for {self.path}")
        return float(self.meta["threshold"])

    @property
    def max_shift(self) -> int:
        """Shift range the threshold was calibrated with (use it for
        :func:`palmpay.match.code_scores`)."""
        return int(self.meta.get("max_shift", DEFAULT_MAX_SHIFT))

    def embed(self, roi: np.ndarray) -> Template:
        """Template of one ROI, a (128, 128) uint8 grey image."""
        vectors, codes = self.embed_many([roi], batch_size=1)
        return Template(vector=vectors[0], code=codes[0])

    def embed_many(
        self, rois: Sequence[np.ndarray], batch_size: int = 64
    ) -> tuple[np.ndarray, np.ndarray]:
        """Templates of many ROIs: ``(N, dim)`` float32 unit vectors and ``(N, code_bytes)``
        uint8 codes. ``batch_size`` bounds memory only; results do not depend on it."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        vectors = np.empty((len(rois), self.dim), np.float32)
        codes = np.empty((len(rois), self.code_bytes), np.uint8)
        for start in range(0, len(rois), batch_size):
            batch = [self._check_roi(r) for r in rois[start : start + batch_size]]
            x = np.stack(batch).astype(np.float32)[:, None] * np.float32(1.0 / 255.0)
            vec, sign = self.session.run(["vector", "sign"], {self.input_name: x})
            stop = start + len(batch)
            vectors[start:stop] = _unit(vec)
            bits = np.ascontiguousarray(sign.transpose(0, 2, 3, 1)).reshape(len(batch), -1)
            codes[start:stop] = np.packbits(bits != 0, axis=1)
        return vectors, codes

    def _check_roi(self, roi: np.ndarray) -> np.ndarray:
        roi = np.asarray(roi)
        if roi.dtype != np.uint8 or roi.shape != self.input_size:
            raise ValueError(
                f"ROI must be a {self.input_size} uint8 grey image, got {roi.shape} {roi.dtype}"
            )
        return roi


def _unit(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    if not np.all(np.isfinite(norms)) or np.any(norms <= 1e-12):
        raise ValueError("model produced a zero or non-finite vector")
    return (vectors / norms).astype(np.float32)
