"""Author ``models/compcode.onnx``: a training-free Gabor competitive-coding network.

Run ``python models/build_compcode.py`` (needs the dev dependency ``onnx``; no torch, no data).
The output is byte-for-byte deterministic: the filter bank is computed in float64 with numpy and
rounded to float32 once, and the graph is built in a fixed order with fixed opset/IR versions, so
a rebuild reproduces the committed file (``tests/embed/test_embed.py`` checks this).

The network (N = batch size, K = :data:`ORIENTATIONS`, G = :data:`GRID`)::

    roi  float32 N×1×128×128   grey ROI / 255 (any affine grey map a·x+b, a>0, gives the same code)
     │ Pad (reflect, PAD on every side)
     │ Conv K filters KSIZE×KSIZE, stride STRIDE: the negative real Gabor bank of Kong & Zhang's
     │      CompCode (orientations θ_k = kπ/K), each pre-convolved with a STRIDE×STRIDE box, i.e.
     │      the full-resolution filter responses averaged over each STRIDE×STRIDE cell
     ▼
    response float32 N×K×G×G
     ├─ ArgMax over K          → code  int64 N×G×G      winning orientation (CompCode)
     ├─ response > 0           → sign  uint8 N×K×G×G    per-orientation sign (BOCV bits): the
     │                                                  decision code (palmpay.embed packs it)
     └─ one-hot(winner) → AveragePool(POOL, POOL_STRIDE) − 1/K → flatten → L2
                               → vector float32 N×D      block orientation histograms (shortlist)

Knobs (module constants, recorded in the model's metadata_props):

* ``WAVELENGTH`` — period of the Gabor carrier in ROI pixels. Palm principal lines and wrinkles
  on a 128×128 palm ROI are 3–6 px wide; a 12 px period (ω = π/6) is the classic CompCode tuning.
  Shorter periods pick up skin texture and noise, longer ones blur neighbouring lines together.
* ``OCTAVES`` — bandwidth δ: the Gaussian envelope across the carrier has σ = κ/ω with
  κ = √(2 ln 2)(2^δ+1)/(2^δ−1) (Kong & Zhang); the envelope along the line is twice as long.
* ``KSIZE_GABOR`` — support of the Gabor kernel (35 px, the classic choice, ±3.7σ across).
* ``STRIDE`` — code cell size in pixels: 4 → a 32×32 code grid on a 128×128 ROI.
* ``ORIENTATIONS`` — 6 (30° apart), the classic CompCode bank.
* ``POOL``/``POOL_STRIDE`` — block size / step (in code cells) of the orientation histograms
  that form ``vector``; 6/2 gives 14×14 overlapping blocks × 6 orientations = 1176 dims.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = [
    "ORIENTATIONS",
    "WAVELENGTH",
    "OCTAVES",
    "KSIZE_GABOR",
    "STRIDE",
    "ROI_SIZE",
    "GRID",
    "POOL",
    "POOL_STRIDE",
    "gabor_bank",
    "build_model",
    "main",
]

log = logging.getLogger(__name__)

ROI_SIZE = 128
ORIENTATIONS = 6
WAVELENGTH = 12.0
OCTAVES = 1.5
KSIZE_GABOR = 35
STRIDE = 4
GRID = ROI_SIZE // STRIDE
POOL = 6
POOL_STRIDE = 2
KSIZE = KSIZE_GABOR + STRIDE - 1  # Gabor ⊛ STRIDE×STRIDE box
PAD = KSIZE_GABOR // 2  # output cell i averages the 'same' responses at pixels STRIDE·i … +STRIDE-1
OPSET = 17
IR_VERSION = 8

OUT = Path(__file__).resolve().parent / "compcode.onnx"


def gabor_bank(
    orientations: int = ORIENTATIONS,
    wavelength: float = WAVELENGTH,
    octaves: float = OCTAVES,
    size: int = KSIZE_GABOR,
) -> np.ndarray:
    """The negative real Gabor bank of CompCode, float64 (orientations, size, size).

    Each kernel is ``-(g·cos(ω x') − c·g)`` with the Gaussian ``g`` elongated along the line
    direction (σ_across = κ/ω, σ_along = 2κ/ω), ``c`` chosen so the kernel sums to exactly zero
    (the code is then blind to the mean grey level), scaled to unit L1 norm.
    """
    if size % 2 != 1:
        raise ValueError(f"Gabor size must be odd, got {size}")
    half = size // 2
    y, x = np.mgrid[-half : half + 1, -half : half + 1].astype(np.float64)
    omega = 2.0 * np.pi / wavelength
    kappa = np.sqrt(2.0 * np.log(2.0)) * (2.0**octaves + 1.0) / (2.0**octaves - 1.0)
    sigma_across = kappa / omega
    sigma_along = 2.0 * sigma_across
    bank = []
    for k in range(orientations):
        theta = np.pi * k / orientations
        xr = x * np.cos(theta) + y * np.sin(theta)
        yr = -x * np.sin(theta) + y * np.cos(theta)
        envelope = np.exp(-(xr**2) / (2 * sigma_across**2) - yr**2 / (2 * sigma_along**2))
        kernel = envelope * np.cos(omega * xr)
        kernel -= envelope * (kernel.sum() / envelope.sum())
        kernel /= np.abs(kernel).sum()
        bank.append(-kernel)
    return np.stack(bank)


def _strided_bank() -> np.ndarray:
    """Gabor bank convolved with a STRIDE×STRIDE box (mean), float32 (K, 1, KSIZE, KSIZE)."""
    bank = gabor_bank()
    out = np.zeros((ORIENTATIONS, KSIZE, KSIZE), np.float64)
    for dy in range(STRIDE):
        for dx in range(STRIDE):
            out[:, dy : dy + KSIZE_GABOR, dx : dx + KSIZE_GABOR] += bank
    out /= STRIDE * STRIDE
    return out[:, None].astype(np.float32)


def build_model() -> onnx.ModelProto:
    """Build the CompCode graph (see the module docstring)."""
    weights = numpy_helper.from_array(_strided_bank(), "gabor")
    pads = numpy_helper.from_array(np.array([0, 0, PAD, PAD, 0, 0, PAD, PAD], np.int64), "pads")
    offset = numpy_helper.from_array(np.array(1.0 / ORIENTATIONS, np.float32), "uniform")
    zero = numpy_helper.from_array(np.array(0.0, np.float32), "zero")
    flat_shape = numpy_helper.from_array(np.array([0, -1], np.int64), "flat_shape")
    pooled = (GRID - POOL) // POOL_STRIDE + 1
    dim = ORIENTATIONS * pooled * pooled
    nodes = [
        helper.make_node("Pad", ["roi", "pads"], ["padded"], mode="reflect"),
        helper.make_node("Conv", ["padded", "gabor"], ["response"], strides=[STRIDE, STRIDE]),
        helper.make_node("ArgMax", ["response"], ["code"], axis=1, keepdims=0),
        helper.make_node("Greater", ["response", "zero"], ["positive"]),
        helper.make_node("Cast", ["positive"], ["sign"], to=TensorProto.UINT8),
        helper.make_node("ReduceMax", ["response"], ["best"], axes=[1], keepdims=1),
        helper.make_node("Equal", ["response", "best"], ["is_best"]),
        helper.make_node("Cast", ["is_best"], ["onehot"], to=TensorProto.FLOAT),
        helper.make_node(
            "AveragePool",
            ["onehot"],
            ["hist"],
            kernel_shape=[POOL, POOL],
            strides=[POOL_STRIDE, POOL_STRIDE],
        ),
        helper.make_node("Sub", ["hist", "uniform"], ["centred"]),
        helper.make_node("Reshape", ["centred", "flat_shape"], ["flat"]),
        helper.make_node("LpNormalization", ["flat"], ["vector"], axis=1, p=2),
    ]
    graph = helper.make_graph(
        nodes,
        "compcode",
        [helper.make_tensor_value_info("roi", TensorProto.FLOAT, ["N", 1, ROI_SIZE, ROI_SIZE])],
        [
            helper.make_tensor_value_info("code", TensorProto.INT64, ["N", GRID, GRID]),
            helper.make_tensor_value_info(
                "sign", TensorProto.UINT8, ["N", ORIENTATIONS, GRID, GRID]
            ),
            helper.make_tensor_value_info("vector", TensorProto.FLOAT, ["N", dim]),
        ],
        initializer=[weights, pads, offset, zero, flat_shape],
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="palmpay-build_compcode",
        producer_version="1",
        doc_string="Training-free Gabor competitive code (CompCode) for 128x128 palm ROIs.",
    )
    model.ir_version = IR_VERSION
    meta = {
        "input_scale": "1/255",
        "orientations": ORIENTATIONS,
        "wavelength": WAVELENGTH,
        "octaves": OCTAVES,
        "gabor_size": KSIZE_GABOR,
        "stride": STRIDE,
        "grid": GRID,
        "pool": POOL,
        "pool_stride": POOL_STRIDE,
        "vector_dim": dim,
    }
    helper.set_model_props(model, {k: str(v) for k, v in meta.items()})
    onnx.checker.check_model(model, full_check=True)
    return model


def main(argv: list[str] | None = None) -> None:
    """Write the model to ``--out`` (default ``models/compcode.onnx``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    data = build_model().SerializeToString(deterministic=True)
    args.out.write_bytes(data)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    digest = hashlib.sha256(data).hexdigest()
    log.info("wrote %s (%d bytes, sha256 %s)", args.out, len(data), digest)


if __name__ == "__main__":
    main()
