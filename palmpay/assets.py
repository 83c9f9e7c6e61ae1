"""The runtime files palmpay ships beside its code: the models, the kiosk web app, the seed data.

They live in the repository's top-level ``models/``, ``enrollment/`` and ``seeds/`` folders. A
built wheel carries their runtime files (not the build scripts next to them) as package data of
the resource-only package ``palmpay._data`` (see ``[tool.setuptools]`` in ``pyproject.toml``),
so an installed palmpay has ``palmpay/_data/models/compcode.onnx`` and so on. This module is the
one place that finds them: through :func:`importlib.resources.files` when palmpay is installed
from a wheel, and in the checkout itself for an editable install (``pip install -e .`` maps
``palmpay._data`` onto the repository root, which setuptools' editable finder cannot import as
a package, so the same files are read where they are).

:func:`files` gives a :class:`~importlib.resources.abc.Traversable` for reading; :func:`path`
gives a real directory (:func:`importlib.resources.as_file`, kept for the life of the process)
for code that needs file system paths: onnxruntime, ``cv2.VideoCapture``, FastAPI's
``FileResponse``.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
from functools import cache
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

__all__ = ["ASSET_DIRS", "DATA_PACKAGE", "files", "path"]

log = logging.getLogger(__name__)

#: The resource-only package the wheel installs the runtime files into.
DATA_PACKAGE = "palmpay._data"

#: The bundled folders: ``models`` (ONNX models + calibration JSON), ``enrollment`` (the kiosk
#: web app), ``seeds`` (the demo's customers, gallery photos and checkout video).
ASSET_DIRS = ("models", "enrollment", "seeds")

# A source checkout (editable install): the folders sit next to the palmpay package.
_CHECKOUT = Path(__file__).resolve().parent.parent

_extracted = contextlib.ExitStack()
atexit.register(_extracted.close)


@cache
def _root() -> Traversable:
    try:
        return resources.files(DATA_PACKAGE)
    except ModuleNotFoundError:
        if all((_CHECKOUT / name).is_dir() for name in ASSET_DIRS):
            log.debug("%s is not installed: reading the bundled files from %s",
                      DATA_PACKAGE, _CHECKOUT)
            return _CHECKOUT
        raise FileNotFoundError(
            f"palmpay's bundled files are missing: no {DATA_PACKAGE} package and no checkout "
            f"folders {', '.join(ASSET_DIRS)} in {_CHECKOUT} (a broken installation?)"
        ) from None


def files(name: str) -> Traversable:
    """The bundled folder ``name`` (one of :data:`ASSET_DIRS`), for reading its files."""
    if name not in ASSET_DIRS:
        raise ValueError(f"no bundled folder {name!r}; there are {ASSET_DIRS}")
    return _root() / name


@cache
def path(name: str) -> Path:
    """The bundled folder ``name`` as a real directory on the file system.

    For an installed wheel or a checkout this is the folder itself; were palmpay imported from
    an archive, :func:`importlib.resources.as_file` extracts it once, until the process exits.
    """
    return _extracted.enter_context(resources.as_file(files(name)))
