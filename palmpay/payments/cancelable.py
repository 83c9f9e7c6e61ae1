"""Cancelable palm templates (ISO/IEC 24745): a secret, per-deployment, renewable transform
applied to every template before it is indexed or stored.

The transform is derived from one 256-bit *template key* of the keyring
(:attr:`palmpay.payments.keys.Keyring.template_keys`; created with the keyring, renewed by
``palmpay keys renew-templates``). It acts on the two parts of a
:class:`palmpay.embed.Template` so that every score is exactly what it was in clear:

``vector`` → ``Q · vector``
    ``Q`` is a secret random orthogonal D×D map: three layers of a secret permutation followed
    by secret random rotations of 56-coordinate blocks (each the QR of uniform entries drawn
    from SHAKE-256(key)), so that every output coordinate mixes every input. Cosines, hence the
    FAISS shortlist, are unchanged up to float rounding (≈ 1e-7). (A dense Haar rotation would
    do as well but needs a 1176² QR, seconds on a busy machine.) A signed permutation would be
    exact too but keeps the multiset of ``|v_i|`` of every template, which links a palm across
    deployments; a full rotation keeps only the norm (1 for every template). The map is
    recomputed from the key at start-up; numpy/LAPACK builds can differ in its last bits, which
    moves a cosine by ~1e-7: harmless, since the vector only shortlists.

``code`` → ``code ⊕ M`` (stored templates only)
    ``M`` is a secret full-grid bit mask (SHAKE-256(key), one bit per code bit, exact bytes). A
    per-cell permutation of the orientation bits would break the ±3-cell shift search of
    :func:`palmpay.match.code_scores`; an XOR mask keeps it: the probe stays in clear and for each
    shift the matcher XORs the probe's centre with the mask's window at that shift, so
    ``Hamming((C⊕M)[w], P⊕M[w]) = Hamming(C[w], P)`` — every code score is bit-for-bit the same
    (``code_scores(..., mask=M)``; the index holds ``M`` as :attr:`PalmIndex.code_mask`).

What it protects against, honestly:

- Templates that leak **without the key** (index dumps, exports, backups): compared directly,
  templates of one palm in two deployments (keys A and B) score at chance (EER ≈ 50 %, measured
  in ``docs/security/privacy.md``). A renewal of the key renews every template without
  re-enrolment (:mod:`palmpay.payments.renewal`); old templates then match nothing the service
  computes. But the mask is one pad for the whole database: the bits whose population
  frequency is far from ½ give much of it away, and an attacker holding two whole leaked
  databases plus population statistics links them at ≈ 2.5 % EER (clear: 0.24 %) — inherent to
  any transform that keeps every Hamming distance and the shift search.
- It is **not** a one-way function: with the key the transform is inverted exactly
  (:meth:`TemplateTransform.reveal`), so the keyring must be kept apart from the data (it is
  the same keyring file that protects the card vault). Within one deployment the templates
  stay linkable — that is what matching needs.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from dataclasses import dataclass, field

import numpy as np

from palmpay.embed import Template

__all__ = ["TemplateTransform", "IDENTITY", "transform_for"]

log = logging.getLogger(__name__)

_ROTATION_LABEL = b"palmpay:template-rotation:v1:"
_MASK_LABEL = b"palmpay:template-mask:v1:"


#: Layers of the secret rotation (each: a permutation, then independent rotations of blocks).
_LAYERS = 3


def _block_size(dim: int) -> int:
    """The largest divisor of ``dim`` in 16..64 (1176-d vectors: 56), else ``dim`` itself."""
    return next((b for b in range(64, 15, -1) if dim % b == 0), dim)


@functools.lru_cache(maxsize=8)
def _rotation(key: bytes, dim: int) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """The secret orthogonal map of ``key`` for ``dim``-d vectors, as ``_LAYERS`` layers of
    ``(permutation, blocks)``: permute the coordinates, then rotate each block of ``b``
    coordinates by its own random orthogonal ``b×b`` matrix (QR of uniform entries from
    SHAKE-256(key), signs fixed so it is unique). Three such layers with permutations between
    mix every coordinate into every output (56³ ≫ 1176) at the cost of small QRs only; the
    product is orthogonal, so cosines are kept."""
    b = _block_size(dim)
    stream = hashlib.shake_256(_ROTATION_LABEL + dim.to_bytes(4, "big") + key)
    per_layer = dim + dim * b
    raw = np.frombuffer(stream.digest(8 * per_layer * _LAYERS), dtype="<u8")
    layers = []
    for i in range(_LAYERS):
        chunk = raw[i * per_layer:(i + 1) * per_layer]
        perm = np.argsort(chunk[:dim], kind="stable")
        uniform = chunk[dim:].astype(np.float64) / float(2**64) * 2.0 - 1.0
        blocks = []
        for m in uniform.reshape(dim // b, b, b):
            q, r = np.linalg.qr(m)
            signs = np.sign(np.diag(r))
            signs[signs == 0] = 1.0
            blocks.append(q * signs)  # the unique Q with a positive-diagonal R
        layers.append((perm, np.stack(blocks)))
    return tuple(layers)


def _rotate(layers: tuple[tuple[np.ndarray, np.ndarray], ...], v: np.ndarray,
            inverse: bool) -> np.ndarray:
    """Apply the map (or its inverse, the transpose) to ``v`` (..., D) in float64."""
    lead = v.shape[:-1]
    for perm, blocks in (reversed(layers) if inverse else layers):
        nb, b, _ = blocks.shape
        if not inverse:
            v = np.einsum("nij,...nj->...ni", blocks, v[..., perm].reshape(*lead, nb, b))
            v = v.reshape(*lead, nb * b)
        else:
            v = np.einsum("nji,...nj->...ni", blocks, v.reshape(*lead, nb, b))
            v = v.reshape(*lead, nb * b)[..., np.argsort(perm)]
    return v


@functools.lru_cache(maxsize=8)
def _mask(key: bytes, nbytes: int) -> np.ndarray:
    """The secret code mask of ``key`` for ``nbytes``-byte packed codes (uint8)."""
    digest = hashlib.shake_256(_MASK_LABEL + nbytes.to_bytes(4, "big") + key).digest(nbytes)
    mask = np.frombuffer(digest, dtype=np.uint8).copy()
    mask.setflags(write=False)
    return mask


@dataclass(frozen=True)
class TemplateTransform:
    """The transform of one template key. ``key_id`` is stored beside every template
    (``palm_templates.transform_id``); ``None`` is the identity (templates stored before
    migration ``0006_audit``, or a keyring without a template key)."""

    key_id: str | None
    key: bytes | None = field(default=None, repr=False)

    @property
    def enabled(self) -> bool:
        return self.key is not None

    def code_mask(self, nbytes: int) -> np.ndarray | None:
        """The mask the index needs (``PalmIndex(code_mask=...)``); None for the identity."""
        return None if self.key is None else _mask(self.key, nbytes)

    def _rotate(self, vector: np.ndarray, inverse: bool = False) -> np.ndarray:
        vector = np.asarray(vector, dtype=np.float32)
        if self.key is None:
            return vector.copy()
        layers = _rotation(self.key, vector.shape[-1])
        return _rotate(layers, vector.astype(np.float64), inverse).astype(np.float32)

    def _xor(self, code: np.ndarray) -> np.ndarray:
        code = np.asarray(code, dtype=np.uint8)
        mask = self.code_mask(code.shape[-1])
        return code.copy() if mask is None else np.bitwise_xor(code, mask)

    def protect(self, template: Template) -> Template:
        """A clear template → its stored/indexed form: ``(Q·v, code ⊕ M)``."""
        return Template(self._rotate(template.vector), self._xor(template.code))

    def probe(self, template: Template) -> Template:
        """A clear probe → what the index is searched with: ``(Q·v, code)`` (the matcher applies
        the mask per shift)."""
        return Template(self._rotate(template.vector), np.asarray(template.code, np.uint8))

    def reveal(self, template: Template) -> Template:
        """The inverse of :meth:`protect` (renewal under a new key; needs this key)."""
        return Template(self._rotate(template.vector, inverse=True), self._xor(template.code))


#: No transform (templates in clear).
IDENTITY = TemplateTransform(None, None)


def transform_for(key_id: str | None, keys: dict[str, bytes] | None) -> TemplateTransform:
    """The transform of ``key_id`` from a keyring's template keys (``None`` → identity);
    ``KeyError`` when the keyring lacks it."""
    if key_id is None:
        return IDENTITY
    if keys is None or key_id not in keys:
        raise KeyError(key_id)
    return TemplateTransform(key_id, keys[key_id])
