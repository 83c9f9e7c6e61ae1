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
    the code grid is a shift of whole 6-bit groups. Compared by :func:`code_scores`, a
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
    "code_scores",
    "unpack_codes",
    "DEFAULT_MAX_SHIFT",
    "BITS_PER_CELL",
    "POPCOUNT_MAX_PROBES",
]

log = logging.getLogger(__name__)

#: Translation search range of :func:`code_scores`, in code cells (one cell = 4 ROI pixels).
#: ±3 cells = ±12 px = ±9 % of the ROI: absorbs residual ROI misalignment. A larger range
#: tolerates worse alignment but lifts impostor scores (more chances to match by luck) and
#: costs (2s+1)² matrix products. The calibrated value is ``PalmEmbedder.meta["max_shift"]``.
DEFAULT_MAX_SHIFT = 3
#: Bits per code cell: one sign bit per Gabor orientation.
BITS_PER_CELL = 6
#: Up to this many probes, :func:`code_scores` uses the XOR/popcount path instead of BLAS.
POPCOUNT_MAX_PROBES = 4


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
        """Decision threshold on :func:`code_scores` (accept when score ≥ threshold)."""
        if "threshold" not in self.meta:
            raise CalibrationError(f"no calibrated threshold for {self.path}")
        return float(self.meta["threshold"])

    @property
    def max_shift(self) -> int:
        """Shift range the threshold was calibrated with (use it for :func:`code_scores`)."""
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


def unpack_codes(codes: np.ndarray, grid: tuple[int, int] | None = None) -> np.ndarray:
    """Packed codes (N, B) uint8 → (N, H, W, BITS_PER_CELL) float32 in {-1, +1}.

    ``grid`` defaults to the square grid implied by ``B``."""
    bits = _unpack_bits(codes, grid)
    return bits.astype(np.float32) * 2.0 - 1.0


def _unpack_bits(codes: np.ndarray, grid: tuple[int, int] | None) -> np.ndarray:
    """Packed codes (N, B) uint8 → (N, H, W, BITS_PER_CELL) uint8 in {0, 1}."""
    codes = np.asarray(codes)
    if codes.dtype != np.uint8 or codes.ndim != 2:
        raise ValueError(f"codes must be (N, B) uint8, got {codes.shape} {codes.dtype}")
    cells = codes.shape[1] * 8 // BITS_PER_CELL
    if grid is None:
        side = int(round(np.sqrt(cells)))
        grid = (side, side)
    if grid[0] * grid[1] * BITS_PER_CELL > codes.shape[1] * 8 or grid[0] * grid[1] != cells:
        raise ValueError(f"{codes.shape[1]} code bytes do not hold a {grid} grid")
    bits = np.unpackbits(codes, axis=1, count=grid[0] * grid[1] * BITS_PER_CELL)
    return bits.reshape(len(codes), grid[0], grid[1], BITS_PER_CELL)


def _check_shift(max_shift: int, h: int, w: int) -> int:
    s = int(max_shift)
    if s < 0 or 2 * s >= min(h, w):
        raise ValueError(f"max_shift must be in [0, {(min(h, w) - 1) // 2}], got {max_shift}")
    return s


def _row_words(bits: np.ndarray) -> np.ndarray:
    """(N, H, W, K) {0,1} → (N, H, words) uint64: each row's W·K bits packed, zero padded."""
    n, h, w, k = bits.shape
    packed = np.packbits(bits.reshape(n, h, w * k), axis=-1)
    pad = (-packed.shape[-1]) % 8
    if pad:
        packed = np.concatenate([packed, np.zeros((n, h, pad), np.uint8)], axis=-1)
    return np.ascontiguousarray(packed).view(np.uint64)


def _popcount_scores(
    probe_codes: np.ndarray,
    gallery_codes: np.ndarray,
    max_shift: int,
    grid: tuple[int, int] | None,
) -> np.ndarray:
    probe = _unpack_bits(probe_codes, grid)
    gallery = _unpack_bits(gallery_codes, grid)
    _, h, w, k = probe.shape
    s = _check_shift(max_shift, h, w)
    ch, cw = h - 2 * s, w - 2 * s
    n_bits = ch * cw * k
    centres = _row_words(probe[:, s : s + ch, s : s + cw])  # (P, ch, words)
    best = np.full((len(probe), len(gallery)), n_bits, np.int64)
    for dx in range(2 * s + 1):
        columns = _row_words(gallery[:, :, dx : dx + cw])  # (G, h, words)
        for dy in range(2 * s + 1):
            window = columns[:, dy : dy + ch]
            for row, centre in enumerate(centres):
                distance = np.bitwise_count(window ^ centre).sum(axis=(1, 2), dtype=np.int64)
                np.minimum(best[row], distance, out=best[row])
    return (1.0 - best / n_bits).astype(np.float32)


def code_scores(
    probe_codes: np.ndarray,
    gallery_codes: np.ndarray,
    max_shift: int = DEFAULT_MAX_SHIFT,
    *,
    grid: tuple[int, int] | None = None,
    chunk: int = 2048,
) -> np.ndarray:
    """Shift-tolerant code similarity of every probe against every gallery code.

    :param probe_codes: (P, B) uint8 packed codes (``Template.code`` rows); a single (B,) code is
        accepted as P = 1.
    :param gallery_codes: (G, B) uint8 packed codes (a single (B,) code is G = 1).
    :param max_shift: translation search range in code cells. The probe's centre region
        (the grid minus ``max_shift`` cells on every side) is compared with every window of the
        gallery code displaced by up to ±``max_shift`` cells in x and y; the best window wins.
        Because only the probe's centre is used, every window lies fully inside the gallery
        code and no masks are needed. Use the calibrated ``PalmEmbedder.max_shift``.
    :param grid: code grid (H, W); defaults to square.
    :param chunk: gallery (and probe) rows handled per block; bounds memory at about
        ``chunk² · 4`` bytes plus ``chunk · H · W · 24`` bytes for the unpacked codes.
    :returns: (P, G) float32 in [0, 1]: 1 − (Hamming distance / compared bits), max over shifts.
        1 = identical; unrelated palms score ≈ 0.5.

    Implementation, two exact paths with identical results:

    - few probes (≤ :data:`POPCOUNT_MAX_PROBES`, the live 1:shortlist case): each code row is
      packed into 64-bit words once per horizontal shift, and the Hamming distance is
      ``bitwise_count`` of the XOR of the probe centre with each gallery window — no float
      copies and no BLAS threads (which cost more than they save on such small products);
    - many probes (evaluation): bits become ±1 floats, so for each shift
      ``dot = n − 2·hamming`` is one matrix product ``P_centre @ G_window.T`` (multithreaded
      BLAS), kept as a running maximum. All-pairs Tongji (3000 × 3000, 49 shifts, 4056 bits
      each) is 3.6 TFLOP: about 30 s on 2 free cores.
    """
    probe_codes = np.atleast_2d(np.asarray(probe_codes))
    gallery_codes = np.atleast_2d(np.asarray(gallery_codes))
    if probe_codes.ndim != 2 or gallery_codes.ndim != 2:
        raise ValueError("codes must be (N, B) uint8 arrays")
    if probe_codes.shape[1] != gallery_codes.shape[1]:
        raise ValueError(
            f"probe codes have {probe_codes.shape[1]} bytes, gallery {gallery_codes.shape[1]}"
        )
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    n_probe, n_gallery = len(probe_codes), len(gallery_codes)
    out = np.empty((n_probe, n_gallery), np.float32)
    if n_probe == 0 or n_gallery == 0:
        return out
    if n_probe <= POPCOUNT_MAX_PROBES:
        return _popcount_scores(probe_codes, gallery_codes, max_shift, grid)
    probe_pm = unpack_codes(probe_codes, grid)
    _, h, w, k = probe_pm.shape
    s = _check_shift(max_shift, h, w)
    ch, cw = h - 2 * s, w - 2 * s
    n_bits = ch * cw * k
    centre = np.ascontiguousarray(probe_pm[:, s : s + ch, s : s + cw]).reshape(n_probe, n_bits)
    del probe_pm
    for g0 in range(0, n_gallery, chunk):
        gallery_pm = unpack_codes(gallery_codes[g0 : g0 + chunk], grid)
        n_g = len(gallery_pm)
        window = np.empty((n_g, ch, cw, k), np.float32)
        flat = window.reshape(n_g, n_bits)
        for p0 in range(0, n_probe, chunk):
            block = centre[p0 : p0 + chunk]
            best = np.full((len(block), n_g), -np.inf, np.float32)
            dot = np.empty_like(best)
            for dy in range(2 * s + 1):
                for dx in range(2 * s + 1):
                    np.copyto(window, gallery_pm[:, dy : dy + ch, dx : dx + cw])
                    np.matmul(block, flat.T, out=dot)
                    np.maximum(best, dot, out=best)
            out[p0 : p0 + len(block), g0 : g0 + n_g] = (best + n_bits) / (2.0 * n_bits)
    np.clip(out, 0.0, 1.0, out=out)
    return out
