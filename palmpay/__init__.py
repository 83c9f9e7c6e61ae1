"""PalmPay: open-source pay-by-palm on a commodity RGB camera.

Stages, one module each: :mod:`palmpay.capture` (frames + quality) → :mod:`palmpay.roi` (hand
landmarks → aligned palm ROI) → :mod:`palmpay.embed` (ONNX model → template) →
:mod:`palmpay.index` (FAISS 1:N search + shift-tolerant re-rank) → :mod:`palmpay.metrics`.
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
