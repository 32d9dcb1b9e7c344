"""The package layout is the architecture: layers import downward only, there is no import cycle,
only the command line imports typer and rich, every module imports first on its own, the command
line starts without torch, and every registry folder holds exactly the entries its files name."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path
from typing import Iterator, Optional

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "advcli"

# A module may import modules of its own layer or of lower layers, never of higher ones.
LAYERS = {
    "errors": 0, "registry": 0, "settings": 0, "_version": 0, "_lazy": 0,
    "threat": 1,
    "models": 2, "io": 2, "data": 2, "runtime": 2,
    "attacks": 3,
    "training": 4, "evaluation": 4, "export": 4, "verification": 4, "reporting": 4,
    "cli": 5,
}
FACADES = {"advcli", "advcli.__main__", "advcli._compat"}  # the public entry points, above every layer
CLI_LIBRARIES = {"typer", "rich", "click"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _resolve(module: str, path: Path, level: int, name: Optional[str]) -> str:
    if level == 0:
        return name or ""
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    base = package.split(".")
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([name] if name else []))


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_nodes(tree: ast.AST) -> Iterator[ast.stmt]:
    """Every import statement, module-level or inside functions, except those only for type checkers."""
    stack = [tree]
    while stack:
        node = stack.pop()
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                stack.extend(child.orelse)  # type: ignore[arg-type]
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                yield child
            stack.append(child)


def _lazy_table(tree: ast.Module) -> dict[str, str]:
    """A package's ``lazy_exports(__name__, TABLE)``: public name -> the module that defines it."""
    assigned = {target.id: node.value for node in tree.body if isinstance(node, ast.Assign)
                for target in node.targets if isinstance(target, ast.Name)}
    table: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "lazy_exports" and len(node.args) > 1:
            argument = node.args[1]
            argument = assigned.get(argument.id, argument) if isinstance(argument, ast.Name) else argument
            if isinstance(argument, ast.Dict):
                table.update({key.value: value.value for key, value in zip(argument.keys, argument.values)
                              if isinstance(key, ast.Constant) and isinstance(value, ast.Constant)})
    return table


def _lazy_targets(tree: ast.Module) -> list[str]:
    return sorted(set(_lazy_table(tree).values()))


def imports_of(module: str, path: Path, known: dict[str, Path]) -> dict[str, set[str]]:
    """The advcli modules `module` imports (with each one's import kinds) and the outside libraries."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    outside: set[str] = set()

    def add(target: str) -> None:
        if target.split(".")[0] != "advcli":
            outside.add(target.split(".")[0])
            return
        while target and target not in known:  # `from pkg import name` names a module or an attribute
            target = target.rsplit(".", 1)[0] if "." in target else ""
        if target and target != module:
            found.add(target)

    for node in _import_nodes(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        else:
            base = _resolve(module, path, node.level, node.module)
            for alias in node.names:
                add(f"{base}.{alias.name}")
    for target in _lazy_targets(tree):  # lazy exports live in package __init__ files: ".x" is module.x
        add(module + target if target.startswith(".") else target)
    return {"advcli": found, "outside": outside}


@pytest.fixture(scope="module")
def graph() -> dict[str, dict[str, set[str]]]:
    known = modules()
    return {name: imports_of(name, path, known) for name, path in known.items()}


def layer_of(module: str) -> Optional[int]:
    if module in FACADES:
        return None
    top = module.split(".")[1] if "." in module else "advcli"
    return LAYERS[top]


def find_cycle(edges: dict[str, set[str]]) -> Optional[list[str]]:
    """One import cycle among `edges` (as a path that returns to its start), or None."""
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> Optional[list[str]]:
        state[node] = 1
        path.append(node)
        for target in sorted(edges.get(node, ())):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state:
                cycle = visit(target)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(edges):
        if start not in state:
            cycle = visit(start)
            if cycle:
                return cycle
    return None


def test_every_top_level_part_has_a_layer():
    tops = {name.split(".")[1] for name in modules() if "." in name and name not in FACADES}
    assert tops <= set(LAYERS), tops - set(LAYERS)


def test_layers_import_downward_only(graph):
    upward = []
    for module, imports in graph.items():
        mine = layer_of(module)
        if mine is None:
            continue
        for target in imports["advcli"]:
            theirs = layer_of(target)
            if theirs is not None and theirs > mine:
                upward.append(f"{module} (layer {mine}) imports {target} (layer {theirs})")
    assert not upward, "\n".join(upward)


def test_there_is_no_import_cycle(graph):
    edges = {module: imports["advcli"] for module, imports in graph.items() if module not in FACADES}
    assert find_cycle(edges) is None, " -> ".join(find_cycle(edges) or [])


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_only_the_command_line_imports_typer_or_rich(graph):
    leaks = {module: sorted(imports["outside"] & CLI_LIBRARIES) for module, imports in graph.items()
             if not module.startswith("advcli.cli") and imports["outside"] & CLI_LIBRARIES}
    assert not leaks, leaks


def test_no_public_name_shadows_a_submodule():
    """``from .x import y`` or a lazy export named like a submodule would replace the module
    attribute, so ``import advcli.pkg.y as m`` would give the function, not the module."""
    clashes = []
    for module, path in modules().items():
        if path.name != "__init__.py":
            continue
        submodules = {child.stem for child in path.parent.glob("*.py") if child.stem != "__init__"}
        submodules |= {child.name for child in path.parent.iterdir() if (child / "__init__.py").is_file()}
        tree = ast.parse(path.read_text())
        exported = set()
        for node in _import_nodes(tree):
            if isinstance(node, ast.ImportFrom) and node.level:
                exported |= {alias.asname or alias.name for alias in node.names}
        exported |= set(_lazy_table(tree))
        clashes += [f"{module}.{name}" for name in exported & submodules]
    assert not clashes, clashes


def test_every_module_imports_first_on_its_own():
    """Each module is imported with no other advcli module loaded before it (torch stays loaded, so
    the run is quick): no module depends on the order in which others were imported."""
    names = [name for name in modules() if name not in ("advcli.__main__",)]
    script = (
        "import importlib, json, sys, torch, numpy\n"
        "failed = {}\n"
        f"for name in {names!r}:\n"
        "    for loaded in [m for m in sys.modules if m == 'advcli' or m.startswith('advcli.')]:\n"
        "        del sys.modules[loaded]\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception as error:\n"
        "        failed[name] = f'{type(error).__name__}: {error}'\n"
        "print(json.dumps(failed))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {}


def test_the_command_line_starts_without_torch():
    script = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from advcli.cli import app\n"
        "for args in (['--help'], ['--version'], ['eval', '--help'], ['verify', '--help'],\n"
        "             ['train', '--batch-size', '0'], ['verify', '--method', 'lp']):\n"
        "    CliRunner().invoke(app, args)\n"
        "print(sorted(m for m in ('torch', 'numpy', 'onnx', 'onnxruntime', 'matplotlib') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


FOLDER_REGISTRIES = [
    ("advcli.attacks.methods", "ATTACKS"),
    ("advcli.data.formats", "FORMATS"),
    ("advcli.models.architectures", "MODELS"),
    ("advcli.training.methods", "METHODS"),
    ("advcli.evaluation.sanity", "SANITY_CHECKS"),
    ("advcli.runtime.backends", "BACKENDS"),
    ("advcli.verification.methods", "BOUND_METHODS"),
]


@pytest.mark.parametrize("package, attribute", FOLDER_REGISTRIES)
def test_each_file_of_a_registry_folder_registers_exactly_its_own_name(package, attribute):
    import importlib

    registry = getattr(importlib.import_module(package), attribute)
    folder = Path(importlib.import_module(package).__file__).parent
    files = sorted(path.stem.replace("_", "-") for path in folder.glob("*.py") if not path.stem.startswith("_"))
    assert sorted(registry.names()) == files
    for name in registry.names():
        assert registry.get(name) is not None
    assert sorted(registry._entries) == files  # nothing registered under a name no file carries


def test_command_line_choices_are_the_registries():
    from advcli.attacks import ATTACKS
    from advcli.cli import options
    from advcli.data import FORMATS
    from advcli.models import MODELS
    from advcli.training import METHODS
    from advcli.verification import BOUND_METHODS, INTERMEDIATE_METHODS

    assert [choice.value for choice in options.AttackName] == list(ATTACKS.names())
    assert [choice.value for choice in options.BoundMethodName] == list(BOUND_METHODS.names())
    assert [choice.value for choice in options.IntermediateName] == list(INTERMEDIATE_METHODS.names())
    assert [choice.value for choice in options.ModelName] == list(MODELS.names())
    assert [choice.value for choice in options.MethodName] == list(METHODS.names())
    assert all(name in options.DATA_HELP for name in FORMATS.names())


def test_modules_and_functions_stay_readable():
    """No module over 400 lines; no function body over 60 lines unless its docstring says why
    ("Long because ...")."""
    long_modules, long_functions = [], []
    for module, path in modules().items():
        text = path.read_text()
        if len(text.splitlines()) > 400:
            long_modules.append(module)
        for node in ast.walk(ast.parse(text)):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            docstring = ast.get_docstring(node) or ""
            body = node.body[1:] if ast.get_docstring(node) is not None else node.body
            if body and node.end_lineno - body[0].lineno + 1 > 60 and "Long because" not in docstring:
                long_functions.append(f"{module}.{node.name}")
    assert not long_modules and not long_functions, (long_modules, long_functions)
