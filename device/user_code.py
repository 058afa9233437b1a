"""The user's own Python file, named on a command line as FILE.py:NAME (`--from` on the host, `--io` on the board)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from device.manifest import EdgerlError

_LOADED: dict[str, object] = {}
"""The user modules this process imported, by name: a later file of the same name replaces one of them."""


def load_named(spec: str, flag: str, kind: str, error: type[EdgerlError]) -> tuple[Path, str, object]:
    """Import FILE.py of `FILE.py:NAME`: (its path, NAME, the module's NAME or None); `error` for each way it fails."""
    file, sep, name = spec.rpartition(":")
    if not sep or not file or not name:
        raise error(f"{flag} wants FILE.py:{kind}, got {spec!r}")
    path = Path(file)
    if not path.is_file():
        raise error(f"{flag}: no file {path}")
    # Imported as Python would import it from its folder: under its own name, the folder on the path. A sibling
    # module it imports (the reference scripts' utils_atari.py) is found, and so are both by a ParallelEnv's
    # worker processes, which import the env's code by module name.
    module_name = path.stem
    if not module_name.isidentifier():
        raise error(f"{flag}: {path.name} cannot be imported by name; rename it to a Python identifier "
                    "(letters, digits, _)")
    folder = str(path.resolve().parent)
    existing = sys.modules.get(module_name)
    if existing is not None and existing not in _LOADED.values():  # a library's module, not a user's file
        raise error(f"{flag}: {path.name} has the name of the module {module_name!r} already imported from "
                    f"{getattr(existing, '__file__', None) or 'Python itself'}; rename your file")
    if folder not in sys.path:
        sys.path.insert(0, folder)
    loader = importlib.util.spec_from_file_location(module_name, path)
    if loader is None or loader.loader is None:
        raise error(f"{flag}: {path} is not a Python file")
    module = importlib.util.module_from_spec(loader)
    sys.modules[module_name] = module  # dataclasses and pickling look a class's module up by name
    _LOADED[module_name] = module
    try:
        loader.loader.exec_module(module)
    except Exception as err:  # the user's code: report where it failed, in one line
        raise error(f"{flag}: importing {path} failed: {type(err).__name__}: {err}") from err
    return path, name, getattr(module, name, None)
