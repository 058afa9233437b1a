"""The board's folder layout and its checksum file: the names every board-side step and the host agree on.

Stdlib only and importing nothing of ours: this module travels to the board
with `deploy/board/side.py`, which runs on the board's own python3 before
any release (or venv) exists there.

    <board folder>/                        default ~/edgerl
      releases/<id>/bundle/ device/ SHA256SUMS .verified venv -> ../../venvs/<key>
      incoming/<id>/                       uploads in progress (files end in .part until complete)
      venvs/<key>/ (.complete)             one per dependency set, shared by releases
      wheelhouse/<key>/                    wheels pushed for an offline install
      current -> releases/<id>             what runs; only ever a verified release
      previous -> releases/<id>            what `rollback` returns to
      committed -> releases/<id>           the last release that passed its health gate (`--service`)
      gate.json                            the gate in progress: release, what to go back to, attempts
      gate-result.json                     how the last gate ended: committed or rolled back, and why
      status.json                          the service loop's figures, rewritten once a second
      reports/                             play reports
      .deploy.lock                         flock held by the deploy in progress
      .board/<code digest>/                the board module of the host that deployed
      channel/                             a board that pulls (`edgerl enroll`): agent.json, credentials,
                                           metadata/ (TUF's trusted metadata), agent/<digest>/, lib/, last-poll.json
"""

from __future__ import annotations

import hashlib
import os

BOARD_DIR = "edgerl"
"""Default board folder, relative to the login user's home (an absolute path is kept as is)."""
RELEASES = "releases"
INCOMING = "incoming"
VENVS = "venvs"
WHEELHOUSE = "wheelhouse"
REPORTS = "reports"
CURRENT = "current"
PREVIOUS = "previous"
DEPLOY_LOCK = ".deploy.lock"
BOARD_CODE = ".board"
SUMS = "SHA256SUMS"
"""sha256sum's format, one `<hex>  <relative path>` line per file of the release."""
VERIFIED = ".verified"
"""Marks a release whose self-test passed on this board (written just before the switch)."""
IN_USE = ".in-use"
"""In a release folder: shared-locked by every process running from it; a prune takes it exclusively (in_use.py)."""
MODEL_CHOICE = ".model-choice.json"
"""In a bundle folder: int8 or fp32, as the board's self-test timed them (device/model_choice.py)."""
VENV_LINK = "venv"
VENV_COMPLETE = ".complete"
BUNDLE_DIR = "bundle"
DEVICE_DIR = "device"
PART = ".part"
"""Suffix of a file still being uploaded."""
COMMITTED = "committed"
GATE = "gate.json"
GATE_RESULT = "gate-result.json"
SERVE_STATUS = "status.json"
SERVICE_FILE = "service.json"
"""In a release: how the service serves it ({"hz": N or null, "io": "io/FILE.py:CLASS" or null})."""
IO_DIR = "io"
"""In a release: the user's I/O class file, checksummed like the bundle."""
UNIT = "edgerl.service"
GATE_UNIT = "edgerl-gate.service"
DATA = "data"
"""Recordings the host pulls (`edgerl data pull`): each a folder `data/NAME/` that `--record` wrote."""
RECORD_INDEX = "index.json"
"""A recording's index: its runs, and its shards with their sha256 (device/record.py writes it)."""
CHANNEL = "channel"
"""A board that pulls its releases from a TUF channel keeps the agent, its settings and TUF's metadata here."""
RECORD_LOCK = ".index.lock"
"""flock'ed by whoever rewrites a recording's index: the recording loop, and a pull that prunes."""


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks (a model can be larger than a small board likes to hold)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def format_sums(digests: dict[str, str]) -> str:
    """SHA256SUMS text for {relative path: hex digest}, sorted by path."""
    return "".join(f"{digest}  {name}\n" for name, digest in sorted(digests.items()))


def parse_sums(text: str) -> dict[str, str]:
    """{relative path: hex digest} from SHA256SUMS text; a line without the two-space separator is skipped."""
    sums = {}
    for line in text.splitlines():
        digest, sep, name = line.partition("  ")
        if sep and name:
            sums[name] = digest
    return sums


def sums_digest(text: str) -> str:
    """The short digest of a SHA256SUMS text that ends a release id: editing the file and its sums is caught."""
    return hashlib.sha256(text.encode()).hexdigest()[:8]
