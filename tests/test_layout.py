"""The engine's folders are its architecture: the network reads no files (weight formats live in
`weights`, above it), so an import from `network` into anything but itself, the errors and the
schedules is a layering bug."""
import ast
from pathlib import Path

CORE = Path(__file__).resolve().parents[1] / "infinity_core"
# what a network module may import from the engine: itself, the shared errors and scale schedules
NETWORK_MAY_USE = ("infinity_core.network", "infinity_core.errors", "infinity_core.schedules")
# outside the engine: the tensor library and the standard library only (no file readers such as
# safetensors, gguf or transformers' loaders)
OUTSIDE_ALLOWED = {"torch", "math", "re", "logging", "contextlib", "dataclasses", "functools", "typing",
                   "__future__", "collections", "itertools", "time"}


def engine_imports(path: Path) -> list[str]:
    """Absolute names of every module `path` imports, anywhere in the file (lazy imports too)."""
    package = ".".join(path.relative_to(CORE.parent).with_suffix("").parts[:-1])
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[:len(package.split(".")) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            names += [module] if node.module else [f"{module}.{alias.name}" for alias in node.names]
    return names


def test_the_network_imports_nothing_that_reads_files():
    modules = sorted((CORE / "network").glob("*.py"))
    assert len(modules) >= 7  # transformer, VAE, quantizer, patchify, RoPE, config, text
    wrong = {}
    for path in modules:
        for name in engine_imports(path):
            inside = name.startswith("infinity_core")
            allowed = name.startswith(NETWORK_MAY_USE) if inside else name.split(".")[0] in OUTSIDE_ALLOWED
            if not allowed:
                wrong.setdefault(path.name, []).append(name)
    assert wrong == {}


def test_the_import_reader_resolves_relative_imports():
    # the check above is only as good as this reader: a weights import written relatively is seen
    transformer_file = CORE / "weights" / "transformer_file.py"
    names = engine_imports(transformer_file)
    assert "infinity_core.network.transformer" in names and "infinity_core.weights.checkpoint" in names
