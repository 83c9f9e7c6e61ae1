"""The package's shape: stages import only earlier stages, and no module grows past a sitting.

The live path runs capture → quality → roi → embed → match → index → decision, assembled by
``pipeline`` (stateless, frame → Template) and ``recognizer`` (presentation state + index); the
payment service and the HTTP API sit on top (docs/architecture.md). Every ``palmpay`` import in
a stage module, at the top or inside a function, must name the same or an earlier stage, or a
foundation module any stage may use.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "palmpay"

#: Stages in data-flow order; a stage may import only stages at or before its own position.
STAGES = ["capture", "dataset", "quality", "roi", "embed", "match", "index", "decision",
          "liveness", "pipeline", "recognizer", "evaluate", "evaluate_open_set", "payments",
          "api", "demo", "bench", "cli"]
#: Used by any stage: settings, bundled files, ONNX sessions, storage, metrics and the pure
#: open-set maths (tail model, score-matrix functions), the package root.
FOUNDATIONS = {"config", "assets", "ortsession", "db", "metrics", "tail", "openset",
               "migrations", "__init__", "cputime"}
MAX_LINES = 400


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "migrations" not in p.parts)


def _stage(top: str) -> int | None:
    return STAGES.index(top) if top in STAGES else None


def _imported_tops(tree: ast.AST) -> set[str]:
    tops = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            parts = node.module.split(".")
            if parts[0] == "palmpay":
                if len(parts) > 1:
                    tops.add(parts[1])
                else:  # from palmpay import decision, synth, __version__
                    tops.update("__init__" if alias.name.startswith("__") else alias.name
                                for alias in node.names)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "palmpay" and len(parts) > 1:
                    tops.add(parts[1])
    return tops


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_stages_import_only_earlier_stages(path: Path) -> None:
    top = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
    if top in FOUNDATIONS:
        own = -1  # foundations import no stage
    elif top == "synth":
        own = len(STAGES)  # test-only: may use any stage
    else:
        own = _stage(top)
        assert own is not None, f"{top} is neither a stage nor a foundation: place it"
    for imported in _imported_tops(ast.parse(path.read_text())) - {top}:
        if imported in FOUNDATIONS:
            continue
        if imported == "synth" and top == "bench":
            continue  # the benchmarks render synthetic hands, as the tests do
        assert imported != "synth", f"{path.name} imports palmpay.synth, which is for tests"
        level = _stage(imported)
        assert level is not None, f"{path.name} imports unknown palmpay.{imported}"
        assert level <= own, (f"{path.relative_to(PACKAGE)} (stage {top}) imports the later "
                              f"stage palmpay.{imported}")


def test_the_stage_rule_catches_a_backwards_import() -> None:
    tree = ast.parse("from palmpay.roi import palm_region\nfrom palmpay import decision\n")
    assert _imported_tops(tree) == {"roi", "decision"}
    assert _stage("roi") > _stage("quality")  # so quality importing roi would fail above


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_over_a_sitting(path: Path) -> None:
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(PACKAGE)} has {lines} lines"
