"""The import graph of distill/ and applications/ follows the layer order of docs/ARCHITECTURE.md and has no cycle."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def layers(text: str) -> list[list[str]]:
    """The ```layers block, top layer first: each line's names before the run of spaces that starts its comment."""
    block = re.search(r"```layers\n(.*?)```", text, re.S)
    assert block, "docs/ARCHITECTURE.md has no ```layers block"
    return [re.split(r"\s{3,}", line.strip())[0].split() for line in block.group(1).splitlines() if line.strip()]


def modules(root: Path) -> dict[str, Path]:
    out = {}
    for p in sorted(root.glob("distill/**/*.py")) + sorted(root.glob("applications/**/*.py")):
        parts = list(p.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


def imports(mods: dict[str, Path]) -> dict[str, set[str]]:
    """module -> the project modules it imports (relative imports resolved; ``from pkg import name`` counts as the
    submodule ``pkg.name`` when there is one, else as ``pkg``)."""
    graph = {}
    for m, p in mods.items():
        package = m.split(".") if p.name == "__init__.py" else m.split(".")[:-1]
        out = set()
        for node in ast.walk(ast.parse(p.read_text(), str(p))):
            if isinstance(node, ast.Import):
                out |= {a.name for a in node.names if a.name in mods}
            elif isinstance(node, ast.ImportFrom):
                base = package[:len(package) - node.level + 1] if node.level else []
                name = ".".join(base + ([node.module] if node.module else []))
                subs = {f"{name}.{a.name}" for a in node.names if f"{name}.{a.name}" in mods}
                out |= subs
                if len(subs) < len(node.names) and name in mods:
                    out.add(name)
        graph[m] = out - {m}
    return graph


def layer_of(module: str, order: list[list[str]]) -> int | None:
    """The index (0 = top) of the layer naming ``module`` or its longest named package."""
    best, where = -1, None
    for i, names in enumerate(order):
        for n in names:
            if (module == n or module.startswith(n + ".")) and len(n) > best:
                best, where = len(n), i
    return where


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter[0]; counter[0] += 1; stack.append(start); on.add(start)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = counter[0]; counter[0] += 1; stack.append(w); on.add(w)
                    work.append((w, iter(sorted(graph.get(w, ())))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop(); on.discard(w); comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def check(root: Path, text: str) -> list[str]:
    order = layers(text)
    mods = modules(root)
    graph = imports(mods)
    problems = [f"{m}: no layer of docs/ARCHITECTURE.md names it" for m in mods if layer_of(m, order) is None]
    for m, targets in graph.items():
        lm = layer_of(m, order)
        for t in sorted(targets):
            lt = layer_of(t, order)
            if lm is not None and lt is not None and lt < lm:
                problems.append(f"{m} imports {t}, a higher layer ({' '.join(order[lt])})")
    problems += [f"import cycle: {' -> '.join(c)}" for c in cycles(graph)]
    return problems


def test_the_import_graph_follows_the_documented_layers():
    problems = check(ROOT, (ROOT / "docs" / "ARCHITECTURE.md").read_text())
    assert not problems, "\n".join(problems)


@pytest.fixture
def tiny(tmp_path):
    """A two-layer project: distill.engine below distill.methods."""
    for rel, body in {"distill/__init__.py": "", "distill/engine/__init__.py": "",
                      "distill/engine/a.py": "from . import b\n", "distill/engine/b.py": "",
                      "distill/methods/__init__.py": "from ..engine import a\n"}.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(body)
    return tmp_path


DOC = "```layers\ndistill.methods   top\ndistill.engine distill   bottom\n```\n"


def test_the_check_finds_an_upward_import_and_a_cycle(tiny):
    assert check(tiny, DOC) == []
    (tiny / "distill/engine/b.py").write_text("def f():\n    from ..methods import x\n")    # lazy, still counted
    problems = check(tiny, DOC)
    assert "distill.engine.b imports distill.methods, a higher layer (distill.methods)" in problems
    assert any(p.startswith("import cycle:") and "distill.engine.a" in p and "distill.methods" in p for p in problems)


def test_the_check_finds_an_unplaced_module(tiny):
    (tiny / "distill/extra.py").write_text("")
    assert check(tiny, "```layers\ndistill.methods   top\ndistill.engine   bottom\n```\n") == \
        ["distill: no layer of docs/ARCHITECTURE.md names it", "distill.extra: no layer of docs/ARCHITECTURE.md names it"]


@pytest.mark.parametrize("old,new", [("distill.experts", "distill.methods.mkdt.experts"),
                                     ("distill.squeeze", "distill.methods.scdd.squeeze")])
def test_a_moved_module_keeps_its_old_path_for_one_release(old, new, monkeypatch):
    import importlib
    import sys
    monkeypatch.delitem(sys.modules, old, raising=False)
    with pytest.warns(DeprecationWarning, match=f"{old} moved to {new}"):
        alias = importlib.import_module(old)
    assert alias is importlib.import_module(new)        # the same module object: a patch on one reaches the other


def test_every_script_is_listed_with_what_it_writes():
    """docs/ARCHITECTURE.md's scripts table and scripts/ agree, and no script imports `applications` unless the
    table says it benchmarks an application."""
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    section = text[text.index("## scripts/"):]
    listed = set(re.findall(r"^\| `([^`]+)` \|", section, re.M))
    present = {p.name for p in (ROOT / "scripts").iterdir() if p.is_file()}
    assert present - listed == set(), f"scripts not in docs/ARCHITECTURE.md's table: {sorted(present - listed)}"
    assert listed - present == set(), f"the table lists scripts that do not exist: {sorted(listed - present)}"
    for name in sorted(present):
        body = (ROOT / "scripts" / name).read_text()
        row = next(line for line in section.splitlines() if line.startswith(f"| `{name}` |"))
        if re.search(r"^\s*(from|import) applications", body, re.M) or "import applications" in body:
            assert "application" in row, f"scripts/{name} imports applications but does not benchmark one"
        first = next(line for line in body.splitlines()[1:4] + body.splitlines()[:1]
                     if line.strip() and not line.startswith("#!"))
        assert len(first.strip('#" ').strip()) > 20, f"scripts/{name} does not say what it does in its first lines"


def test_every_script_starts_and_parses_its_arguments(monkeypatch, capsys):
    """The smoke test of scripts/: each Python script imports what it uses and answers --help (a moved module or a
    renamed option fails here), and each shell script parses (bash -n). Their toy runs: tests/test_gpu_suite.py
    (which drives bench_krrst, bench_mkdt and bench_scdd), the campaign tests (campaign.sh's leaderboard)."""
    import runpy
    import subprocess
    import sys
    scripts = sorted((ROOT / "scripts").iterdir())
    for p in [p for p in scripts if p.suffix == ".py"]:
        monkeypatch.setattr(sys, "argv", [str(p), "--help"])
        with pytest.raises(SystemExit) as e:
            runpy.run_path(str(p), run_name="__main__")
        out = capsys.readouterr().out
        assert e.value.code in (0, None) and "usage" in out.lower(), f"scripts/{p.name} --help: {out[-300:]}"
    for p in [p for p in scripts if p.suffix == ".sh"]:
        r = subprocess.run(["bash", "-n", str(p)], capture_output=True, text=True)
        assert r.returncode == 0, f"scripts/{p.name} does not parse: {r.stderr}"
