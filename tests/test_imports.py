"""Issue 11.5: no import cycles in pt_plugin/ or export/ (function-level imports count too), and the runtime
never imports torch."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def module_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports anywhere in its file."""
    files = {}
    for pkg in ("pt_plugin", "export"):
        for f in (ROOT / pkg).rglob("*.py"):
            name = ".".join(f.relative_to(ROOT).with_suffix("").parts)
            files[name.removesuffix(".__init__")] = f
    graph = {m: set() for m in files}
    for m, f in files.items():
        package = m if f.name == "__init__.py" else m.rpartition(".")[0]
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1]) if node.level else ""
                target = ".".join(p for p in (base, node.module or "") if p)
                names = [target] + [f"{target}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            graph[m] |= {n for n in names if n in files and n != m}
    return graph


def test_no_import_cycles():
    graph = module_graph()

    def related(a, b):  # a package and its own submodules (re-exports in __init__) are not a cycle
        return a.startswith(b + ".") or b.startswith(a + ".")

    def reach(start):
        seen, todo = set(), [(start, (start,))]
        while todo:
            node, path = todo.pop()
            for n in graph[node]:
                if related(node, n):
                    continue
                if n == start:
                    return path
                if n not in seen:
                    seen.add(n)
                    todo.append((n, path + (n,)))
        return None

    cycles = [c for c in map(reach, graph) if c]
    assert not cycles, cycles


def test_runtime_never_imports_torch():
    for f in (ROOT / "pt_plugin").rglob("*.py"):
        for node in ast.walk(ast.parse(f.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not any(n == "torch" or n.startswith("torch.") for n in names), f
