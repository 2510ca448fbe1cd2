"""`mypy --strict` passes on the package and on a typed usage example, and
catches a type error against the stubs."""

from __future__ import annotations

from pathlib import Path

from mypy import api

HERE = Path(__file__).resolve().parent
PACKAGE = HERE.parent / "py_src" / "dac"


def mypy(*paths: str) -> tuple[str, int]:
    out, err, status = api.run(["--strict", "--no-incremental", "--cache-dir=/dev/null", *paths])
    return out + err, status


def test_mypy_strict_passes_on_the_package_and_a_typed_example() -> None:
    out, status = mypy(str(PACKAGE), str(HERE / "typed_usage.py"))
    assert status == 0, out


def test_mypy_catches_misuse(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import dac\n"
        "r = dac.simulate([1.0, 2.0])\n"
        "n: str = r.rounds\n"
        "dac.topology.diameter(8, 'ring')\n"
    )
    out, status = mypy(str(bad))
    assert status == 1, out
    assert 'Incompatible types in assignment (expression has type "int"' in out
    assert "diameter" in out


def test_the_stubs_declare_exactly_the_attributes_of_each_native_result() -> None:
    import ast

    from dac import _native

    stubs = ast.parse((PACKAGE / "_native.pyi").read_text())
    declared = {
        node.name: {f.name for f in node.body if isinstance(f, ast.FunctionDef)}
        for node in stubs.body
        if isinstance(node, ast.ClassDef) and node.name.endswith("Out")
    }
    assert len(declared) == 5, declared
    for name, attributes in declared.items():
        native = getattr(_native, name)
        public = {a for a in dir(native) if not a.startswith("_")}
        assert public == attributes, name
