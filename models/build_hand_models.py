"""Build the ONNX hand models (palm detector, hand landmarker) from the MediaPipe 0.10.21 wheel.

MediaPipe (Apache-2.0) ships its hand models as ``.tflite`` files inside the ``mediapipe`` wheel;
0.10.21 is the last release that ships them and it pins ``numpy<2``, so it can never be a runtime
dependency of PalmPay. This script downloads that exact wheel, checks its sha256, extracts the
four hand models, converts them to ONNX, checks every ONNX model against the TFLite interpreter
and writes:

- ``models/palm_detection_{lite,full}.onnx`` and ``models/hand_landmark_{lite,full}.onnx``
- ``models/hand_models.json``: wheel version; sha256 of the wheel, each ``.tflite`` and ``.onnx``
- ``models/NOTICE-mediapipe.md``: licence notice, source and what was changed

The converter tools live in a throw-away build venv, never in the project's dependencies. From
the repository root (``.work/`` is git-ignored), either let the script make that venv and re-run
itself in it (what ``make models`` runs; any python3.11 will do, this needs only the stdlib)::

    python3.11 models/build_hand_models.py --venv .work/venv-models [--wheel mediapipe-....whl]

or do the same by hand (the pins are :data:`BUILD_REQUIREMENTS`)::

    python3.11 -m venv .work/venv-models
    .work/venv-models/bin/pip install ai-edge-litert==2.3.0 backports.strenum==1.2.8 \\
        flatbuffers==25.12.19 ml_dtypes==0.6.0 numpy==2.4.6 onnx==1.23.2 onnxruntime==1.32.0 \\
        packaging==26.4 protobuf==7.36.2 tflite==2.18.0 tflite2onnx==0.4.1 tqdm==4.70.1 \\
        typing_extensions==4.16.0
    .work/venv-models/bin/python models/build_hand_models.py            # downloads the wheel
    .work/venv-models/bin/python models/build_hand_models.py --wheel /path/to/mediapipe-....whl

What is changed on the way (``tflite2onnx`` alone fails on the palm detector): the models store
their weights as float16 constants that feed ``DEQUANTIZE`` ops; ``tflite2onnx`` 0.4.1 cannot
handle the 3-D fp16 PReLU slopes (IndexError), so every ``DEQUANTIZE`` of an fp16 constant is
folded into an fp32 constant before conversion (numerically exact: fp16 -> fp32 is lossless). The
ONNX outputs are renamed to what they mean (``regressors``/``scores``; ``landmarks``/``presence``/
``handedness``/``world_landmarks``) and the input is renamed ``image``; the ONNX input is NCHW
float32 RGB in [0, 1] (the TFLite input is NHWC; ``tflite2onnx`` inserts the transpose).
Initializers and value_info are sorted by name so that the ONNX files are byte-reproducible.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import logging
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

__all__ = ["BUILD_REQUIREMENTS", "MODELS", "WHEEL_SHA256", "WHEEL_VERSION", "build", "main"]

log = logging.getLogger(__name__)

WHEEL_VERSION = "0.10.21"
WHEEL_NAME = f"mediapipe-{WHEEL_VERSION}-cp311-cp311-manylinux_2_28_x86_64.whl"
WHEEL_SHA256 = "05dc4a9e593655a79558d05d6227d31018c2537a4bd3362b51e230cf22aecfe3"
OUT_DIR = Path(__file__).resolve().parent
# The build venv, pinned (pip freeze of a venv where this script was run).
BUILD_REQUIREMENTS = (
    "ai-edge-litert==2.3.0",
    "backports.strenum==1.2.8",
    "flatbuffers==25.12.19",
    "ml_dtypes==0.6.0",
    "numpy==2.4.6",
    "onnx==1.23.2",
    "onnxruntime==1.32.0",
    "packaging==26.4",
    "protobuf==7.36.2",
    "tflite==2.18.0",
    "tflite2onnx==0.4.1",
    "tqdm==4.70.1",
    "typing_extensions==4.16.0",
)
BUILD_MODULES = ("ai_edge_litert", "numpy", "onnx", "onnxruntime", "tflite2onnx")
TOLERANCE = 2e-3  # max |ONNX - TFLite| on any output, relative to the output's scale (max |x|, >=1)


@dataclass(frozen=True)
class HandModel:
    """One model to convert: where it lives in the wheel and what its outputs are called."""

    name: str
    member: str
    outputs: tuple[str, ...]


MODELS = (
    HandModel(
        "palm_detection_lite",
        "mediapipe/modules/palm_detection/palm_detection_lite.tflite",
        ("regressors", "scores"),
    ),
    HandModel(
        "palm_detection_full",
        "mediapipe/modules/palm_detection/palm_detection_full.tflite",
        ("regressors", "scores"),
    ),
    HandModel(
        "hand_landmark_lite",
        "mediapipe/modules/hand_landmark/hand_landmark_lite.tflite",
        ("landmarks", "presence", "handedness", "world_landmarks"),
    ),
    HandModel(
        "hand_landmark_full",
        "mediapipe/modules/hand_landmark/hand_landmark_full.tflite",
        ("landmarks", "presence", "handedness", "world_landmarks"),
    ),
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--wheel", type=Path, help="use this mediapipe wheel instead of downloading"
    )
    parser.add_argument(
        "--out", type=Path, default=OUT_DIR, help="output folder (default: models/)"
    )
    parser.add_argument(
        "--venv", type=Path, help="create/reuse this build venv and re-run the script in it"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.venv and Path(sys.prefix).resolve() != args.venv.resolve():
        python = ensure_build_venv(args.venv)
        forwarded = list(argv if argv is not None else sys.argv[1:])
        os.execv(python, [python, str(Path(__file__).resolve()), *forwarded])
    missing = [name for name in BUILD_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        raise ModuleNotFoundError(
            f"build tools missing ({', '.join(missing)}): run with --venv .work/venv-models"
        )
    build(args.out, args.wheel)
    return 0


def ensure_build_venv(venv: Path) -> str:
    """Create ``venv`` with :data:`BUILD_REQUIREMENTS` unless it has them; return its python."""
    python = venv / "bin" / "python"
    stamp = venv / "palmpay-build-requirements.txt"
    wanted = "\n".join(BUILD_REQUIREMENTS) + "\n"
    if python.is_file() and stamp.is_file() and stamp.read_text() == wanted:
        return str(python)
    log.info("creating build venv %s", venv)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", *BUILD_REQUIREMENTS], check=True
    )
    stamp.write_text(wanted)
    return str(python)


def build(out_dir: Path, wheel: Path | None = None) -> dict:
    """Download (or take) the wheel, convert every model, verify it and write the manifest."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="palmpay-hand-models-") as tmp:
        tmp_dir = Path(tmp)
        wheel = wheel or download_wheel(tmp_dir)
        wheel_sha = sha256_file(wheel)
        if wheel_sha != WHEEL_SHA256:
            raise ValueError(f"{wheel}: sha256 {wheel_sha} != expected {WHEEL_SHA256}")
        log.info("wheel %s ok (sha256 %s)", wheel.name, wheel_sha)
        manifest: dict = {
            "source": f"mediapipe=={WHEEL_VERSION} (PyPI wheel {WHEEL_NAME})",
            "wheel_version": WHEEL_VERSION,
            "wheel_sha256": wheel_sha,
            "converter": "tflite2onnx==0.4.1 after folding fp16 DEQUANTIZE constants",
            "models": {},
        }
        with zipfile.ZipFile(wheel) as archive:
            licence = apache_licence(archive)
            for model in MODELS:
                tflite_path = tmp_dir / f"{model.name}.tflite"
                tflite_path.write_bytes(archive.read(model.member))
                onnx_path = out_dir / f"{model.name}.onnx"
                error = convert(model, tflite_path, onnx_path, tmp_dir)
                manifest["models"][model.name] = {
                    "wheel_member": model.member,
                    "tflite_sha256": sha256_file(tflite_path),
                    "onnx_file": onnx_path.name,
                    "onnx_sha256": sha256_file(onnx_path),
                    "max_abs_error_vs_tflite": float(f"{error:.3g}"),
                }
                log.info("%s -> %s (max |onnx - tflite| %.2g)", model.member, onnx_path.name, error)
    (out_dir / "hand_models.json").write_text(json.dumps(manifest, indent=2) + "\n")
    (out_dir / "NOTICE-mediapipe.md").write_text(notice(manifest, licence))
    return manifest


def download_wheel(dest: Path) -> Path:
    """``pip download --no-deps`` the pinned mediapipe wheel into ``dest``."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary",
            ":all:",
            "--platform",
            "manylinux_2_28_x86_64",
            "--python-version",
            "3.11",
            "--implementation",
            "cp",
            "--dest",
            str(dest),
            f"mediapipe=={WHEEL_VERSION}",
        ],
        check=True,
    )
    path = dest / WHEEL_NAME
    if not path.is_file():
        raise FileNotFoundError(f"pip download did not produce {path}")
    return path


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def convert(model: HandModel, tflite_path: Path, onnx_path: Path, tmp_dir: Path) -> float:
    """Fold fp16 constants, convert with tflite2onnx, rename I/O; return the error vs TFLite."""
    import onnx
    import tflite2onnx

    folded = tmp_dir / f"{model.name}.fp32.tflite"
    folded.write_bytes(fold_fp16_dequantize(tflite_path.read_bytes()))
    raw = tmp_dir / f"{model.name}.raw.onnx"
    tflite2onnx.convert(str(folded), str(raw))
    graph_model = onnx.load(str(raw))
    rename_io(graph_model, "image", model.outputs)
    expand_prelu(graph_model)
    make_deterministic(graph_model)  # first: the Cast nodes follow the initializer order
    store_fp16_exact_weights(graph_model)
    make_deterministic(graph_model)
    graph_model.doc_string = (
        f"MediaPipe {model.name} (Apache-2.0) from mediapipe=={WHEEL_VERSION}, "
        "converted by PalmPay models/build_hand_models.py; see NOTICE-mediapipe.md"
    )
    onnx.checker.check_model(graph_model)
    onnx.save(graph_model, str(onnx_path))
    return compare_with_tflite(tflite_path, onnx_path)


def fold_fp16_dequantize(tflite_bytes: bytes) -> bytes:
    """Replace every DEQUANTIZE of a float16 constant by the equivalent float32 constant."""
    import flatbuffers
    import numpy as np
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(tflite_bytes, 0)
    dequantize = {
        index
        for index, code in enumerate(model.operatorCodes)
        if max(code.builtinCode, code.deprecatedBuiltinCode) == schema.BuiltinOperator.DEQUANTIZE
    }
    folded = 0
    for subgraph in model.subgraphs:
        kept = []
        for op in subgraph.operators:
            source = subgraph.tensors[op.inputs[0]] if op.opcodeIndex in dequantize else None
            data = model.buffers[source.buffer].data if source is not None else None
            if source is None or source.type != schema.TensorType.FLOAT16 or data is None:
                kept.append(op)
                continue
            values = np.frombuffer(bytes(bytearray(data)), dtype="<f2").astype("<f4")
            target = subgraph.tensors[op.outputs[0]]
            buffer = schema.BufferT()
            buffer.data = np.frombuffer(values.tobytes(), dtype=np.uint8)
            model.buffers.append(buffer)
            target.buffer = len(model.buffers) - 1
            folded += 1
        subgraph.operators = kept
    log.debug("folded %d fp16 DEQUANTIZE ops", folded)
    builder = flatbuffers.Builder(len(tflite_bytes) * 2)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def rename_io(graph_model, input_name: str, output_names: tuple[str, ...]) -> None:
    """Rename the single graph input and the outputs (in order) everywhere they are used."""
    graph = graph_model.graph
    if len(graph.input) != 1 or len(graph.output) != len(output_names):
        raise ValueError(
            f"unexpected model I/O: {len(graph.input)} inputs, {len(graph.output)} outputs"
        )
    mapping = {graph.input[0].name: input_name}
    mapping.update({out.name: new for out, new in zip(graph.output, output_names, strict=True)})
    for value in [*graph.input, *graph.output, *graph.value_info]:
        value.name = mapping.get(value.name, value.name)
    for node in graph.node:
        node.input[:] = [mapping.get(name, name) for name in node.input]
        node.output[:] = [mapping.get(name, name) for name in node.output]


def expand_prelu(graph_model) -> None:
    """Rewrite ``PRelu(x, a)`` as ``a * x + (1 - a) * Relu(x)`` (equal up to float rounding).

    onnxruntime's PRelu kernel with per-channel slopes is slow on CPU (it also blocks the NCHWc
    layout); the four plain ops make the palm detector about 35 % faster.
    """
    from onnx import helper, numpy_helper

    graph = graph_model.graph
    initializers = {item.name: item for item in graph.initializer}
    nodes = []
    for node in graph.node:
        if node.op_type != "PRelu" or node.input[1] not in initializers:
            nodes.append(node)
            continue
        x, slope = node.input
        y = node.output[0]
        keep = numpy_helper.to_array(initializers[slope])
        complement = numpy_helper.from_array((1.0 - keep).astype(keep.dtype), f"{slope}__1m")
        graph.initializer.append(complement)
        nodes += [
            helper.make_node("Relu", [x], [f"{y}__relu"]),
            helper.make_node("Mul", [x, slope], [f"{y}__neg"]),
            helper.make_node("Mul", [f"{y}__relu", complement.name], [f"{y}__pos"]),
            helper.make_node("Add", [f"{y}__neg", f"{y}__pos"], [y]),
        ]
    del graph.node[:]
    graph.node.extend(nodes)


def store_fp16_exact_weights(graph_model) -> None:
    """Store float32 weights that are exactly float16 values (the original fp16 constants) as
    float16 initializers followed by a Cast to float32: half the file size, bit-identical
    weights (onnxruntime folds the Cast when it loads the model)."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    graph = graph_model.graph
    casts = []
    for initializer in graph.initializer:
        if initializer.data_type != onnx.TensorProto.FLOAT:
            continue
        values = numpy_helper.to_array(initializer)
        if values.size < 64 or not np.array_equal(values.astype(np.float16), values):
            continue
        name = initializer.name
        half = numpy_helper.from_array(values.astype(np.float16), f"{name}__fp16")
        initializer.CopyFrom(half)
        casts.append(helper.make_node("Cast", [half.name], [name], to=onnx.TensorProto.FLOAT))
    nodes = [*casts, *graph.node]
    del graph.node[:]
    graph.node.extend(nodes)
    log.debug("stored %d initializers as float16", len(casts))


def make_deterministic(graph_model) -> None:
    """Sort initializers and value_info by name (tflite2onnx emits them in set order)."""
    graph = graph_model.graph
    for field in (graph.initializer, graph.value_info):
        ordered = sorted(field, key=lambda item: item.name)
        copies = [type(item)() for item in ordered]
        for copy, item in zip(copies, ordered, strict=True):
            copy.CopyFrom(item)
        del field[:]
        field.extend(copies)


def compare_with_tflite(tflite_path: Path, onnx_path: Path) -> float:
    """Run both models on the same inputs in [0, 1]; raise if any output disagrees."""
    import numpy as np
    import onnxruntime as ort
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(tflite_path))
    interpreter.allocate_tensors()
    tfl_input = interpreter.get_input_details()[0]
    tfl_outputs = interpreter.get_output_details()  # in the subgraph's output order
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    _, height, width, channels = tfl_input["shape"]
    onnx_shape = session.get_inputs()[0].shape
    if list(onnx_shape) != [1, channels, height, width]:
        raise ValueError(
            f"{onnx_path.name}: ONNX input {onnx_shape} is not NCHW of the TFLite input"
        )
    rng = np.random.default_rng(0)
    worst = 0.0
    for trial in range(3):
        # Blocky random images (not white noise): the models see structure, outputs vary.
        low = rng.random((1, height // 16, width // 16, channels), dtype=np.float32)
        if trial == 0:
            low = np.full_like(low, 0.5)
        image = np.kron(low, np.ones((1, 16, 16, 1), np.float32))
        interpreter.set_tensor(tfl_input["index"], image)
        interpreter.invoke()
        expected = [interpreter.get_tensor(d["index"]) for d in tfl_outputs]
        got = session.run(None, {session.get_inputs()[0].name: image.transpose(0, 3, 1, 2)})
        for ref, out in zip(expected, got, strict=True):
            if out.shape != ref.shape:
                raise ValueError(f"{onnx_path.name}: output {out.shape} != TFLite {ref.shape}")
            error = float(np.abs(out - ref).max()) / max(1.0, float(np.abs(ref).max()))
            if error > TOLERANCE:
                raise ValueError(f"{onnx_path.name}: ONNX differs from TFLite by {error:.3g}")
            worst = max(worst, error)
    return worst


def apache_licence(archive: zipfile.ZipFile) -> str:
    """The wheel's Apache-2.0 licence text (without the appended third-party notices)."""
    text = archive.read(f"mediapipe-{WHEEL_VERSION}.dist-info/LICENSE").decode("utf-8")
    licence = text.split("\n=====", 1)[0].rstrip()
    if "Apache License" not in licence:
        raise ValueError("the wheel's LICENSE is not the Apache License")
    return licence


def notice(manifest: dict, licence: str) -> str:
    rows = "\n".join(
        f"| `{name}.onnx` | `{entry['wheel_member']}` | `{entry['tflite_sha256']}` |"
        for name, entry in manifest["models"].items()
    )
    return f"""# MediaPipe hand models — notice

The files `palm_detection_{{lite,full}}.onnx` and `hand_landmark_{{lite,full}}.onnx` in this
folder are derived from the MediaPipe hand models, Copyright The MediaPipe Authors (Google LLC),
licensed under the Apache License, Version 2.0: <https://www.apache.org/licenses/LICENSE-2.0>.
Source: <https://github.com/google-ai-edge/mediapipe>, taken from the PyPI wheel
`{WHEEL_NAME}` (mediapipe=={manifest["wheel_version"]}, sha256 `{manifest["wheel_sha256"]}`).

| ONNX file | original file in the wheel | sha256 of the original |
|---|---|---|
{rows}

## Changes made by PalmPay (`models/build_hand_models.py`)

- Every float16 weight constant that fed a `DEQUANTIZE` op was replaced by the equivalent float32
  constant (lossless), and the `DEQUANTIZE` ops removed.
- Weights that are exact float16 values are stored in the ONNX files as float16 initializers
  followed by a `Cast` to float32 (bit-identical weights, half the size).
- `PRelu(x, a)` (palm detector) is written as `a * x + (1 - a) * Relu(x)`, equal up to float
  rounding and faster in onnxruntime.
- The models were converted from TFLite to ONNX with `tflite2onnx` 0.4.1; the input is now NCHW
  (`image`, float32 RGB in [0, 1]) and the outputs were renamed (`regressors`, `scores`;
  `landmarks`, `presence`, `handedness`, `world_landmarks`).
- Each ONNX model was checked against the TFLite interpreter (max difference in
  `hand_models.json`). No weights were retrained or otherwise modified.

Distributed under the Apache License 2.0; its text, as shipped in the wheel, follows.

```text
{licence}
```
"""


if __name__ == "__main__":
    sys.exit(main())
