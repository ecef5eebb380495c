"""Our hand-written TensorRT stub names only API that the published tensorrt-stubs (10.13) also declare.

The published stubs cannot be fed to mypy (their .pyi files are not valid Python) and, installed into
site-packages, make `import tensorrt` an empty package; `make setup` keeps them in .venv/tensorrt-stubs
and this test reads them as text, class by class, so stubs/tensorrt cannot invent a method.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OURS = ROOT / "stubs" / "tensorrt" / "__init__.pyi"
PUBLISHED = ROOT / ".venv" / "tensorrt-stubs" / "tensorrt_bindings" / "tensorrt.pyi"
# Members the code uses only on TensorRT 8.x, where they exist; the 10.13 stubs no longer list them.
TRT8_ONLY = {"BuilderFlag.STRICT_TYPES"}


def _published_classes(text: str) -> dict[str, set[str]]:
    """Class name -> member names (methods and attributes) from the published stub, read as text."""
    classes: dict[str, set[str]] = {}
    current: set[str] | None = None
    for line in text.splitlines():
        m = re.match(r"class (\w+)", line)
        if m:
            current = classes.setdefault(m.group(1), set())
            continue
        if current is None:
            continue
        m = re.match(r"    (?:def (\w+)|(\w+)\s*[:=])", line)
        if m:
            current.add(m.group(1) or m.group(2))
    return classes


def test_stub_classes_and_members_exist_in_published_stubs() -> None:
    if not PUBLISHED.is_file():
        pytest.skip(f"published tensorrt-stubs not found at {PUBLISHED}; run `make setup`")
    published = _published_classes(PUBLISHED.read_text(encoding="utf-8"))
    tree = ast.parse(OURS.read_text(encoding="utf-8"))
    checked = 0
    missing: list[str] = []
    for node in tree.body:
        if not isinstance(node, ast.ClassDef) or node.name.startswith("_"):
            continue  # private helpers of the stub itself
        if node.name not in published:
            missing.append(node.name)
            continue
        for item in node.body:
            names: list[str] = []
            if isinstance(item, ast.FunctionDef) and not item.name.startswith("__"):
                names = [item.name]
            elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                names = [item.target.id]
            elif isinstance(item, ast.Assign):
                names = [t.id for t in item.targets if isinstance(t, ast.Name)]
            for name in names:
                checked += 1
                if name not in published[node.name] and f"{node.name}.{name}" not in TRT8_ONLY:
                    missing.append(f"{node.name}.{name}")
    assert checked >= 20, "the stub should cover the API jetvox uses"
    assert not missing, f"not in the published TensorRT stubs: {missing}"


@pytest.mark.parametrize(
    ("cls", "method"),
    [
        ("IExecutionContext", "set_input_shape"),
        ("IExecutionContext", "set_tensor_address"),
        ("IExecutionContext", "execute_async_v3"),
        ("ICudaEngine", "get_tensor_name"),
    ],
)
def test_name_based_api_is_what_we_stub(cls: str, method: str) -> None:
    tree = ast.parse(OURS.read_text(encoding="utf-8"))
    members = {
        item.name
        for node in tree.body
        if isinstance(node, ast.ClassDef) and node.name == cls
        for item in node.body
        if isinstance(item, ast.FunctionDef)
    }
    assert method in members
