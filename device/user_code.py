"""The user's own Python file, named on a command line as FILE.py:NAME (`--from` on the host, `--io` on the board)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from device.manifest import EdgerlError


def load_named(spec: str, flag: str, kind: str, error: type[EdgerlError]) -> tuple[Path, str, object]:
    """Import FILE.py of `FILE.py:NAME`: (its path, NAME, the module's NAME or None); `error` for each way it fails."""
    file, sep, name = spec.rpartition(":")
    if not sep or not file or not name:
        raise error(f"{flag} wants FILE.py:{kind}, got {spec!r}")
    path = Path(file)
    if not path.is_file():
        raise error(f"{flag}: no file {path}")
    module_name = f"edgerl_user_{path.stem}"
    loader = importlib.util.spec_from_file_location(module_name, path)
    if loader is None or loader.loader is None:
        raise error(f"{flag}: {path} is not a Python file")
    module = importlib.util.module_from_spec(loader)
    sys.modules[module_name] = module  # dataclasses and pickling look a class's module up by name
    try:
        loader.loader.exec_module(module)
    except Exception as err:  # the user's code: report where it failed, in one line
        raise error(f"{flag}: importing {path} failed: {type(err).__name__}: {err}") from err
    return path, name, getattr(module, name, None)
