"""The package's shape: no module imports another module's private name (the import-linter contracts in
pyproject.toml check the layers and cycles), and every executor kind of the spec has its module."""
import ast
from pathlib import Path
from typing import get_args

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("study", "mmpkd_core", "reports")


def private_imports(source: str) -> list[tuple[int, str, str]]:
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in PACKAGES:
            out += [(node.lineno, node.module, a.name) for a in node.names
                    if a.name.startswith("_") and not a.name.startswith("__")]
    return out


def test_the_check_sees_a_private_import():
    assert private_imports("from study.gains import _x, y\nfrom os import _exit\n") == [(1, "study.gains", "_x")]


def test_no_module_imports_a_private_name_of_another():
    found = [f"{path.relative_to(ROOT)}:{line} {module}.{name}" for pkg in PACKAGES
             for path in sorted((ROOT / pkg).rglob("*.py")) for line, module, name in private_imports(path.read_text())]
    assert found == []


def test_every_executor_kind_of_the_spec_has_one_executor():
    from study.executor import Executor
    from study.runner import EXECUTORS
    from study.spec import ExecutorSpec

    kinds = set(get_args(ExecutorSpec.model_fields["kind"].annotation))
    assert set(EXECUTORS) == kinds == {"ray", "local"}
    assert all(issubclass(cls, Executor) and cls.kind == kind for kind, cls in EXECUTORS.items())
