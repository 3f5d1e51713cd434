"""cli.errors recognises other layers' failures by module and class name, without importing them; a module split
that moves one of those classes must move its entry too, or that failure is reported as a bug."""

from __future__ import annotations

import importlib

import pytest

from cli.errors import _KNOWN


@pytest.mark.parametrize(("module", "name"), [(module, name) for module, name, _kind, _code in _KNOWN])
def test_every_failure_cli_errors_names_is_where_it_says(module: str, name: str) -> None:
    found = getattr(importlib.import_module(module), name, None)
    assert isinstance(found, type) and issubclass(found, Exception), f"{module}.{name} is gone: update cli/errors.py"
