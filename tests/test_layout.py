"""The package's architecture, checked: rooms by capability, no reach-ins, pure
math without Keras, `__all__` everywhere public, KerasTuner imported lazily,
and the old flat module names still importable (with a warning)."""

import ast
import importlib
import pathlib
import subprocess
import sys
import textwrap

import pytest

from kbatch._internal import deprecation

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "kbatch"
MODULES = sorted(PACKAGE.rglob("*.py"))

# The pure math: NumPy and the standard library only (DESIGN.md §1).
PURE = [
    "kbatch/lr/rules.py",
    "kbatch/lr/probes.py",
    "kbatch/scaling/rules.py",
    "kbatch/scaling/adaptive_rule.py",
    "kbatch/critical/estimators.py",
    "kbatch/critical/fits.py",
    "kbatch/advisor/time_to_target.py",
]
FRAMEWORKS = ("keras", "tensorflow", "jax", "torch", "keras_tuner")


def _module_name(path):
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_private(name):
    return any(part.startswith("_") and part != "__init__"
               for part in name.split("."))


def _kbatch_imports(tree):
    """(module, [names]) for every `import kbatch...` / `from kbatch... import`,
    at any depth (function-level imports included)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and (
                node.module == "kbatch" or node.module.startswith("kbatch.")):
            yield node, node.module, [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("kbatch"):
                    yield node, alias.name, []


def reach_ins(path):
    """Every use of another module's underscored name in the file at `path`:
    `from kbatch.x import _y`, an underscored module other than `_internal`,
    and `alias._y` where `alias` is a kbatch module imported here."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found, aliases = [], {}
    for node, module, _ in _kbatch_imports(tree):
        hidden = [p for p in module.split(".") if p.startswith("_")
                  and p != "_internal"]
        if hidden:
            found.append(f"line {node.lineno}: module {module}")
        for alias in getattr(node, "names", []):
            if alias.name.startswith("_"):
                found.append(f"line {node.lineno}: {module}.{alias.name}")
            elif isinstance(node, ast.ImportFrom):
                aliases[alias.asname or alias.name] = f"{module}.{alias.name}"
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and isinstance(node.value, ast.Name) and node.value.id in aliases):
            found.append(f"line {node.lineno}: {node.value.id}.{node.attr}")
    return found


def framework_imports(path):
    """Every import of a deep-learning framework in the file, at any depth."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        found += [f"line {node.lineno}: {n}" for n in names
                  if n.split(".")[0] in FRAMEWORKS]
    return found


def test_no_module_imports_another_modules_underscored_name():
    offenders = {str(p.relative_to(ROOT)): reach_ins(p) for p in MODULES}
    offenders = {k: v for k, v in offenders.items() if v}
    assert not offenders, f"reach-ins (move the shared name to _internal): {offenders}"


def test_the_reach_in_check_catches_each_kind(tmp_path):
    planted = tmp_path / "planted.py"
    planted.write_text(textwrap.dedent("""
        from kbatch.lr.find import _helper
        from kbatch.lr import _private_module
        from kbatch._backend import thing
        from kbatch._internal import data
        data._secret(1)
        data.public(1)
    """))
    found = reach_ins(planted)
    assert len(found) == 4, found
    assert not reach_ins(PACKAGE / "lr" / "rules.py")


def _pure_closure():
    """The pure modules and every kbatch module they import, transitively."""
    todo, seen = [ROOT / p for p in PURE], set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for _, module, names in _kbatch_imports(tree):
            base = ROOT.joinpath(*module.split("."))
            for candidate in [base.with_suffix(".py"), base / "__init__.py",
                              *[(base / n).with_suffix(".py") for n in names]]:
                if candidate.exists() and candidate.name != "__init__.py":
                    todo.append(candidate)
    return sorted(seen)


def test_pure_math_imports_no_framework():
    closure = _pure_closure()
    assert ROOT / "kbatch/_internal/validate.py" in closure  # follows imports
    offenders = {str(p.relative_to(ROOT)): framework_imports(p) for p in closure}
    offenders = {k: v for k, v in offenders.items() if v}
    assert not offenders, offenders


def test_pure_math_runs_with_keras_unimportable():
    """Import each pure module with `keras` & co. made unimportable and the
    package `__init__`s bypassed, then run its doctests."""
    script = textwrap.dedent(f"""
        import doctest, importlib, sys, types
        for name in {FRAMEWORKS!r}:
            sys.modules[name] = None  # `import keras` raises ImportError
        root = {str(ROOT)!r}
        for package in ("kbatch", "kbatch.lr", "kbatch.scaling",
                        "kbatch.critical", "kbatch.advisor", "kbatch._internal"):
            stub = types.ModuleType(package)
            stub.__path__ = [root + "/" + package.replace(".", "/")]
            sys.modules[package] = stub
        failed = 0
        for path in {PURE!r}:
            module = importlib.import_module(path[:-3].replace("/", "."))
            failed += doctest.testmod(module, optionflags=doctest.ELLIPSIS).failed
        sys.exit(1 if failed else 0)
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True,
                         text=True, cwd=ROOT)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]


@pytest.mark.parametrize("path", [p for p in MODULES
                                  if not _is_private(_module_name(p))
                                  and p.name != "__main__.py"],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_every_public_module_has_all(path):
    module = importlib.import_module(_module_name(path))
    assert hasattr(module, "__all__"), f"{module.__name__} has no __all__"
    missing = [n for n in module.__all__ if not hasattr(module, n)]
    assert not missing, f"{module.__name__}.__all__ names missing objects: {missing}"


def test_each_capability_has_its_room():
    rooms = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    assert {"lr", "scaling", "critical", "advisor", "tuner", "_internal"} <= rooms
    flat = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert flat == ["__init__.py", "__main__.py", "cli.py", "datasets.py",
                    "models.py", "plotting.py", "precision.py"], flat


def test_import_kbatch_and_help_do_not_import_keras_tuner():
    # one interpreter, three moments: after `import kbatch`, after
    # `kbatch --help`, and (the check can fail) after using the tuner
    script = textwrap.dedent("""
        import contextlib, io, sys
        import kbatch
        seen = ["keras_tuner" in sys.modules]
        from kbatch import cli
        with contextlib.redirect_stdout(io.StringIO()):
            try:
                cli.main(["--help"])
            except SystemExit:
                pass
        seen.append("keras_tuner" in sys.modules)
        kbatch.tuner.BatchLRHyperModel
        seen.append("keras_tuner" in sys.modules)
        print(seen)
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True,
                         text=True, cwd=ROOT, check=True)
    assert run.stdout.strip().splitlines()[-1] == "[False, False, True]"


@pytest.mark.parametrize("old", sorted(deprecation.MOVED))
def test_old_module_paths_still_work_with_a_deprecation_warning(old):
    import kbatch

    new = importlib.import_module(deprecation.MOVED[old])
    short = old.split(".", 1)[1]
    sys.modules.pop(old, None)
    vars(kbatch).pop(short, None)
    with pytest.warns(DeprecationWarning,
                      match=f"`{old}` moved to `{new.__name__}`") as record:
        module = importlib.import_module(old)
    assert record[0].filename == __file__  # names the importing line
    for name in new.__all__:
        assert getattr(module, name) is getattr(new, name)
    # `kbatch.<old>` attribute access (as `kbatch.suggest.valley` was) too
    sys.modules.pop(old, None)
    vars(kbatch).pop(short, None)
    with pytest.warns(DeprecationWarning, match=f"`{old}` moved") as record:
        again = getattr(kbatch, short)
    assert record[0].filename == __file__
    assert again.__all__ == module.__all__
