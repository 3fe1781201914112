"""The package's shape: imports run one way, and one module holds the seam to spacy-transformers."""
import ast
from pathlib import Path
from typing import Dict, Set

PACKAGE = Path(__file__).resolve().parent.parent / "spacy_unmask"
# spacy-transformers' documented surface: its data classes, the exports of `layers`, the span
# getters, the component. Anything else is reached through `spacy_unmask/seam.py`.
PUBLIC = {"spacy_transformers", "spacy_transformers.data_classes", "spacy_transformers.layers",
          "spacy_transformers.span_getters"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> Dict[str, Set[str]]:
    """Every import in the module, at any depth (an import inside a function counts too):
    {"package": modules of ours, "external": other modules}."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    ours, external = set(), set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
                if node.module is None:
                    ours.update(f"{target}.{alias.name}" for alias in node.names)
                else:
                    ours.add(target)
            elif node.module:
                (ours if node.module.startswith("spacy_unmask") else external).add(node.module)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                (ours if alias.name.startswith("spacy_unmask") else external).add(alias.name)
    return {"package": ours, "external": external}


def graph() -> Dict[str, Set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    edges = {}
    for name, path in modules.items():
        # importing a module runs its package's __init__ first: that is no edge of the module's own
        edges[name] = {m for m in imports_of(path)["package"] if m in modules and m != name}
    return edges


def test_the_package_imports_run_one_way():
    edges = graph()
    state: Dict[str, int] = {}

    def visit(node, trail):
        state[node] = 1
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                cycle = trail[trail.index(nxt):] + [nxt] if nxt in trail else [node, nxt]
                raise AssertionError(f"import circle: {' -> '.join(cycle)}")
            if nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])


def test_only_the_seam_reaches_into_spacy_transformers():
    reaching = {}
    for path in PACKAGE.rglob("*.py"):
        private = {m for m in imports_of(path)["external"] if m.startswith("spacy_transformers") and m not in PUBLIC}
        if private:
            reaching[module_name(path)] = sorted(private)
    assert set(reaching) == {"spacy_unmask.seam"}, reaching


def test_settings_import_nothing_that_acts():
    """settings.py is the bottom of the package (as peft's config.py): it imports only the error
    type and the layer-group spec, so every module can import it without a circle."""
    assert imports_of(PACKAGE / "settings.py")["package"] == {"spacy_unmask.errors", "spacy_unmask.layer_groups"}
