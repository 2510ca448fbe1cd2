"""Every public function and method of `dac` documents itself with an
example (which pytest runs as a doctest)."""

from __future__ import annotations

import inspect
from typing import Any, Iterator, Tuple

import dac


def public_callables() -> Iterator[Tuple[str, Any]]:
    modules = [dac, dac.linalg, dac.bayes, dac.topology]
    for module in modules:
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.isfunction(obj):
                yield f"{module.__name__}.{name}", obj
    for name, member in vars(dac.Comm).items():
        if inspect.isfunction(member) and not name.startswith("_"):
            yield f"dac.Comm.{name}", member


def test_every_public_function_has_a_runnable_example() -> None:
    names = []
    for name, obj in public_callables():
        names.append(name)
        doc = inspect.getdoc(obj) or ""
        assert ">>> " in doc, f"{name} has no example in its docstring"
    assert "dac.simulate" in names and "dac.Comm.allreduce" in names
    assert len(names) >= 15, names
