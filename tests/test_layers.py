"""The package's layers: a module imports only from its own layer or lower ones (lazy imports
inside functions included), so the tree reads bottom-up (docs/architecture.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import otmap

PACKAGE = Path(otmap.__file__).parent

#: top-level packages/modules of otmap and their layer, lowest first
LAYERS = {
    "errors": 0, "_version": 0, "utils": 0,
    "core": 1, "costs": 1, "maps": 1, "embeddings": 1, "schedules": 1,
    "data": 2, "nets": 2, "metrics": 2, "benchmarks": 2, "viz": 2,
    "model": 3,
    "train": 4,
    "experiments": 5,
    "cli": 6, "__main__": 6,
}
#: the package root (``import otmap``): the public facade, above every layer
ROOT = 7


def layer_of(module: str) -> int:
    """Layer of a dotted ``otmap.…`` module name (the package root counts as above all)."""
    parts = module.split(".")
    return LAYERS[parts[1]] if len(parts) > 1 else ROOT


def imported_modules(source: str, module: str) -> list[str]:
    """Every ``otmap`` module that ``source`` (the text of ``module``) imports, anywhere."""
    package = module if module.endswith("__init__") else module.rsplit(".", 1)[0]
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.removesuffix(".__init__").split(".")
                base = base[: len(base) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            if name == "otmap":  # `from otmap import x`: x may be a subpackage
                out += [f"otmap.{alias.name}" if alias.name in LAYERS else "otmap"
                        for alias in node.names]
            else:
                out.append(name)
    return [name for name in out if name == "otmap" or name.startswith("otmap.")]


def violations(source: str, module: str) -> list[str]:
    """Imports of ``module`` that reach a higher layer."""
    own = layer_of(module)
    return [f"{module} (layer {own}) imports {name} (layer {layer_of(name)})"
            for name in imported_modules(source, module) if layer_of(name) > own]


def package_modules() -> dict[str, Path]:
    return {"otmap." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts): path
            for path in PACKAGE.rglob("*.py")}


def test_every_module_has_a_layer():
    for module in package_modules():
        if module != "otmap.__init__":
            assert module.split(".")[1] in LAYERS, f"{module}: add it to LAYERS"


def test_no_module_imports_from_a_higher_layer():
    found = [v for module, path in package_modules().items() if module != "otmap.__init__"
             for v in violations(path.read_text(), module)]
    assert not found, "\n".join(found)


def test_the_check_sees_lazy_relative_and_root_imports():
    source = ("import torch\nfrom otmap.errors import InputError\n"
              "def f():\n    from otmap.cli import main\n"
              "from ..model import result\nfrom otmap import train\nimport otmap\n")
    found = violations(source, "otmap.core.solver")
    assert sorted(found) == sorted(["otmap.core.solver (layer 1) imports otmap.cli (layer 6)",
                     "otmap.core.solver (layer 1) imports otmap.model (layer 3)",
                     "otmap.core.solver (layer 1) imports otmap.train (layer 4)",
                     f"otmap.core.solver (layer 1) imports otmap (layer {ROOT})"])
    assert violations(source.replace("otmap.cli", "otmap.core.costs").replace(
        "..model", "..utils").replace("from otmap import train\nimport otmap\n", ""),
        "otmap.core.solver") == []
