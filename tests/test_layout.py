"""The test tree's layout: shared helpers live in tests/support/, so no test module imports another."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).parent


def _names_a_test_module(dotted: str) -> bool:
    return any(part.startswith("test_") for part in dotted.split("."))


def imported_test_modules(source: str) -> list[str]:
    """The test modules (``tests.<...>.test_*``, relative ``.test_*``) or names in them that ``source`` imports."""
    imported: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported += [
                alias.name
                for alias in node.names
                if alias.name.startswith("tests.") and _names_a_test_module(alias.name)
            ]
        elif isinstance(node, ast.ImportFrom) and (node.level > 0 or (node.module or "").startswith("tests.")):
            package = "." * node.level + (f"{node.module}." if node.module else "")
            imported += [
                f"{package}{alias.name}" for alias in node.names if _names_a_test_module(f"{package}{alias.name}")
            ]
    return imported


def test_no_test_module_imports_another() -> None:
    offenders = {
        str(path.relative_to(TESTS.parent)): imported
        for path in sorted(TESTS.rglob("test_*.py"))
        if (imported := imported_test_modules(path.read_text(encoding="utf-8")))
    }
    assert not offenders, f"move shared helpers to tests/support/: {offenders}"


def test_the_check_sees_every_form_of_import() -> None:
    assert imported_test_modules(
        "from tests.events.test_bus import drain\n"
        "import tests.cli.test_incidents\n"
        "from tests.cli import test_incidents\n"
    ) == ["tests.events.test_bus.drain", "tests.cli.test_incidents", "tests.cli.test_incidents"]
    assert imported_test_modules("from .test_bus import drain\nfrom .. import test_setup\n") == [
        ".test_bus.drain",
        "..test_setup",
    ]
    assert (
        imported_test_modules(
            "from tests.support.kafka import drain\nfrom tests.conftest import REPO_ROOT\n"
            "from .samples import sample_events\nimport test_helpers\n"
        )
        == []
    )
