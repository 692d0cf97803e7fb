"""The package's rooms stack (README, Layout): a module imports only rooms below its own."""

import ast
from pathlib import Path

import relnet

PACKAGE = Path(relnet.__file__).resolve().parent
# Lowest first; the shared small modules (errors, io, figures, the package itself) sit below them all.
ROOMS = ["nn", "rn", "explain", "preset", "tasks", "train", "pretrained", "look", "cli", "__main__"]
SHARED = {"errors", "io", "figures", "__init__"}


def room(module: str) -> str:
    """The room of a dotted module name inside relnet ("relnet.tasks.babi.task" is in "tasks")."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in names if name.startswith("relnet.")}


def test_no_room_imports_a_higher_one():
    assert set(ROOMS) | SHARED >= {path.stem if path.is_file() else path.name for path in PACKAGE.iterdir()
                                   if path.suffix == ".py" or (path / "__init__.py").exists()}
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        own = room("relnet." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts))
        if own in SHARED and own != "__init__":
            level = -1  # the shared modules import no room at all
        elif own in SHARED:
            continue  # the package's __init__ re-exports the public API lazily
        else:
            level = ROOMS.index(own)
        for name in imported_modules(path):
            other = room(name)
            if other in ROOMS and other != own and ROOMS.index(other) > level:
                upward.append(f"{path.relative_to(PACKAGE)} imports {name}")
    assert not upward, upward
