"""The import graph of ``lra/`` and ``models/``: no cycles, no other module's underscore names,
and the commands that only compose configs start without Lightning.

The graph is read from the source with ``ast`` (every ``import``, at module level or inside a
function), so a lazy import back into a caller counts as the cycle it is.
"""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("lra", "models")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def imports(name: str, path: Path, modules: dict[str, Path]) -> list[tuple[str, str | None, int]]:
    """``(module, imported name or None, line)`` for each project module ``name`` imports."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(a.name, None, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, one level up per extra dot
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, *([base] if base else [])])
            for a in node.names:
                if f"{base}.{a.name}" in modules:  # `from pkg import module`
                    found.append((f"{base}.{a.name}", None, node.lineno))
                else:
                    found.append((base, a.name, node.lineno))
    return [(m, n, line) for m, n, line in found if m.split(".")[0] in PACKAGES]


def graph() -> dict[str, set[str]]:
    modules = project_modules()
    edges: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        for target, _, _ in imports(name, path, modules):
            while target not in modules and "." in target:  # `import a.b.c` names a.b.c, or a name in a.b
                target = target.rpartition(".")[0]
            if target in modules and target != name:
                edges[name].add(target)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """One cycle through each strongly connected group of modules that import each other."""
    found, state = [], {}  # state: 1 on the current path, 2 done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                found.append(path[path.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    return found


def test_the_graph_reads_the_real_imports():
    edges = graph()
    assert {"lra.build", "lra.validate", "lra.config"} <= edges["lra.train"]
    assert "lra.build" in edges["lra.validate"] and "lra.train" not in edges["lra.validate"]
    assert "models.attention" in edges["models.encoder"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_among_lra_and_models():
    found = cycles(graph())
    assert not found, "import cycles: " + "; ".join(" -> ".join(c) for c in found)


def test_models_never_import_the_harness():
    wrong = {m: sorted(t) for m, t in graph().items() if m.startswith("models") and any(x.startswith("lra") for x in t)}
    assert not wrong, wrong


def test_no_module_imports_another_modules_underscore_names():
    """``from lra.x import _y`` outside lra.x, or a private module (``_common``) from outside its package."""
    modules = project_modules()
    bad = []
    for name, path in modules.items():
        for target, imported, line in imports(name, path, modules):
            parts = target.split(".")
            for i, part in enumerate(parts):  # a private module belongs to its package (and what is under it)
                owner = ".".join(parts[:i])
                if private(part) and name != owner and not name.startswith(owner + "."):
                    bad.append(f"{path.relative_to(ROOT)}:{line} imports {target}")
            if imported is not None and private(imported) and target != name:
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {imported} from {target}")
    assert not bad, "\n".join(bad)


def loads_lightning(code: str) -> subprocess.CompletedProcess:
    check = "\nimport sys\nassert 'lightning' not in sys.modules, 'lightning was imported'\n"
    return subprocess.run([sys.executable, "-c", code + check], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_composing_a_config_loads_neither_lightning_nor_torch():
    code = "import sys\nfrom lra.config import CONFIG_DIR, compose_config\ncompose_config(['task=text'])\n"
    proc = loads_lightning(code + "assert 'torch' not in sys.modules, 'torch was imported'")
    assert proc.returncode == 0, proc.stderr


def test_lra_data_does_not_load_lightning(tmp_path):
    """``lra-data --help``, and ``lra-data info`` (which composes the training config)."""
    code = "import runpy, sys\n"
    for argv in (["--help"], ["info", "listops", f"paths.data_dir={tmp_path}"]):
        code += (
            f"sys.argv = ['lra-data', *{argv!r}]\n"
            "try:\n    runpy.run_module('lra.data.cli', run_name='__main__')\nexcept SystemExit as e:\n"
            "    assert not e.code, e.code\n"
        )
    proc = loads_lightning(code)
    assert proc.returncode == 0, proc.stderr
    assert "prepare" in proc.stdout and "not prepared" in proc.stdout  # both commands ran
