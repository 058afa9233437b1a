"""The collection `edgerl.board` as a user gets it: built into its tarball, installed from it, run by Ansible."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COLLECTION = REPO / "deploy" / "ansible" / "collection"


def ansible_env(root: Path) -> dict[str, str]:
    """Ansible's settings for a run from `root`: the venv's own ansible (its Python holds edgerl)."""
    bin_dir = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_COLLECTIONS_PATH": str(root / "collections"), "ANSIBLE_LOCAL_TEMP": str(root / "tmp"),
            "ANSIBLE_FORKS": "12", "ANSIBLE_RETRY_FILES_ENABLED": "0"}


def install_collection(root: Path) -> None:
    """`ansible-galaxy collection build`, then `install` from the tarball, offline, into root/collections."""
    built = subprocess.run(["ansible-galaxy", "collection", "build", str(COLLECTION), "--output-path", str(root)],
                           capture_output=True, text=True, timeout=300, env=ansible_env(root))
    assert built.returncode == 0, built.stderr
    (tarball,) = root.glob("edgerl-board-*.tar.gz")
    installed = subprocess.run(["ansible-galaxy", "collection", "install", str(tarball), "-p",
                                str(root / "collections")], capture_output=True, text=True, timeout=300,
                               env=ansible_env(root))
    assert installed.returncode == 0, installed.stderr
    assert (root / "collections" / "ansible_collections" / "edgerl" / "board" / "MANIFEST.json").is_file()


def run_module(root: Path, inventory: Path, host: str, name: str, timeout: float = 600,
               **kw: object) -> subprocess.CompletedProcess:
    """One of the collection's modules on one host, as `ansible HOST -m edgerl.board.NAME -a JSON -o`."""
    return subprocess.run(["ansible", "-i", str(inventory), host, "-m", f"edgerl.board.{name}", "-a",
                           json.dumps(kw, default=str), "-o"], capture_output=True, text=True, timeout=timeout,
                          env=ansible_env(root), cwd=root)


def answer(done: subprocess.CompletedProcess) -> dict:
    """The module's result from `ansible -o` ("host | STATUS => {...}")."""
    return json.loads(done.stdout.split("=>", 1)[1])
