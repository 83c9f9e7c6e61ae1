"""PalmPay: open-source pay-by-palm on a commodity RGB camera.

Stages, one module each, each importing only earlier ones: :mod:`palmpay.capture` (frame
sources) → :mod:`palmpay.quality` (per-frame gates) → :mod:`palmpay.roi` (hand landmarks →
aligned palm ROI) → :mod:`palmpay.embed` (ONNX model → :class:`~palmpay.embed.Template`) →
:mod:`palmpay.match` (shift-tolerant code matcher) → :mod:`palmpay.index` (FAISS shortlist +
code re-rank) → :mod:`palmpay.decision` (presentation fusion and the operating threshold).
:mod:`palmpay.pipeline` runs a frame through ROI, gates and embedding for every caller: the live
path (:mod:`palmpay.recognizer`), the API, ``palmpay eval`` and the benchmarks.
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
