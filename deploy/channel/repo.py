"""A TUF repository in a folder, written with python-tuf's metadata API; served as it is by any static server.

    DIR/metadata/1.root.json root.json     root (its key kept offline in --keys; long expiry)
    DIR/metadata/N.targets.json            the release's files and the rollout (`custom`), signed by targets
    DIR/metadata/N.snapshot.json           the targets version, signed by snapshot
    DIR/metadata/timestamp.json            the snapshot version, short expiry: what a board fetches each poll
    DIR/targets/<path>/<sha256>.<name>     consistent snapshots: a file's name holds its hash, never overwritten
    DIR/reports/<board>/report.json        PUT by the boards (the server config lets each write its own folder)

Every file is written 0644 and every folder 0755, by a rename, so the server's user reads them and never sees half.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from tuf.api.metadata import Metadata, MetaFile, Root, Snapshot, Targets, Timestamp
from tuf.api.serialization.json import JSONSerializer

from deploy.agent.rollout import REPORTS
from deploy.channel import keys
from deploy.channel.keys import ChannelError


@dataclass(frozen=True)
class Expiry:
    """How long each role's signature holds: a board refuses metadata past it (TUF's freeze protection)."""

    root_days: float = 365.0
    targets_days: float = 90.0
    snapshot_days: float = 7.0
    timestamp_days: float = 1.0
    """Short: a server that stops updating is noticed within a day. `edgerl channel refresh` (cron) re-signs it."""

    def of(self, role: str) -> datetime:
        """The expiry date of a role signed now."""
        days = getattr(self, f"{role}_days")
        return (datetime.now(timezone.utc) + timedelta(days=days)).replace(microsecond=0)


DEFAULT_EXPIRY = Expiry()


def write_public(channel: Path, relative: str | Path, data: bytes) -> None:
    """A file of the channel the web server reads: 0644, its folders inside the channel 0755, replaced by a rename.

    Only folders inside the channel are touched: the folders above it are the user's (a walk to / once made /tmp
    0755).
    """
    path = Path(channel) / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    parts = path.parent.relative_to(channel).parts
    for depth in range(1, len(parts) + 1):
        (Path(channel).joinpath(*parts[:depth])).chmod(0o755)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600: the server's user must read it
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class Channel:
    """The repository's four roles, loaded from DIR; each change bumps a version and is signed and written."""

    def __init__(self, folder: Path, keydir: Path | None) -> None:
        self.folder, self.keydir = Path(folder), keydir
        self.meta = self.folder / "metadata"
        if not (self.meta / "root.json").is_file() or not (self.folder / ".edgerl-channel").is_file():
            raise ChannelError(f"{folder} is not a channel (no metadata/root.json): make one with "
                               "`edgerl channel init DIR --keys KEYDIR`")
        self.root = Metadata[Root].from_file(str(self.meta / "root.json"))
        self.timestamp = Metadata[Timestamp].from_file(str(self.meta / "timestamp.json"))
        snap_version = self.timestamp.signed.snapshot_meta.version
        self.snapshot = Metadata[Snapshot].from_file(str(self.meta / f"{snap_version}.snapshot.json"))
        targets_version = self.snapshot.signed.meta["targets.json"].version
        self.targets = Metadata[Targets].from_file(str(self.meta / f"{targets_version}.targets.json"))

    @classmethod
    def init(cls, folder: Path, keydir: Path, expiry: Expiry = DEFAULT_EXPIRY) -> Channel:
        """A new channel: keys in keydir, the four roles signed, an empty targets list."""
        folder = Path(folder)
        if folder.exists() and any(folder.iterdir()):
            raise ChannelError(f"{folder} is not empty: a channel is made in a new or empty folder")
        if keydir.resolve() == folder.resolve() or folder.resolve() in keydir.resolve().parents:
            raise ChannelError(f"--keys {keydir} is inside the channel {folder}: the server would publish the "
                               "private keys; keep them elsewhere")
        signers = keys.generate(keydir)
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o755)
        root = Metadata(Root(expires=expiry.of("root")))
        for role, signer in signers.items():
            root.signed.add_key(signer.public_key, role)
        root.sign(signers["root"])
        targets = Metadata(Targets(expires=expiry.of("targets")))
        snapshot = Metadata(Snapshot(expires=expiry.of("snapshot")))
        timestamp = Metadata(Timestamp(expires=expiry.of("timestamp")))
        serializer = JSONSerializer(compact=False)
        write_public(folder, "metadata/1.root.json", root.to_bytes(serializer))
        write_public(folder, "metadata/root.json", root.to_bytes(serializer))
        (folder / ".edgerl-channel").write_text("a TUF repository made by `edgerl channel init`\n")
        (folder / ".edgerl-channel").chmod(0o644)
        (folder / REPORTS).mkdir(mode=0o755)
        for role, md in (("targets", targets), ("snapshot", snapshot), ("timestamp", timestamp)):
            md.sign(signers[role])
        write_public(folder, "metadata/1.targets.json", targets.to_bytes(serializer))
        write_public(folder, "metadata/1.snapshot.json", snapshot.to_bytes(serializer))
        write_public(folder, "metadata/timestamp.json", timestamp.to_bytes(serializer))
        return cls(folder, keydir)

    def _sign(self, md: Metadata, role: str) -> None:
        if self.keydir is None:
            raise ChannelError(f"signing {role} needs the channel's keys: give --keys KEYDIR")
        md.signatures.clear()
        md.sign(keys.load(self.keydir, role))

    def commit_targets(self, expiry: Expiry = DEFAULT_EXPIRY) -> None:
        """The targets role changed: sign it, then snapshot and timestamp over it (in that order on disk)."""
        serializer = JSONSerializer(compact=False)
        self.targets.signed.version += 1
        self.targets.signed.expires = expiry.of("targets")
        self._sign(self.targets, "targets")
        write_public(self.folder, f"metadata/{self.targets.signed.version}.targets.json",
                     self.targets.to_bytes(serializer))
        self.snapshot.signed.meta["targets.json"] = MetaFile(version=self.targets.signed.version)
        self.commit_snapshot(expiry)

    def commit_snapshot(self, expiry: Expiry = DEFAULT_EXPIRY) -> None:
        """Snapshot re-signed (its expiry renewed), then the timestamp naming it."""
        self.snapshot.signed.version += 1
        self.snapshot.signed.expires = expiry.of("snapshot")
        self._sign(self.snapshot, "snapshot")
        write_public(self.folder, f"metadata/{self.snapshot.signed.version}.snapshot.json",
                     self.snapshot.to_bytes(JSONSerializer(compact=False)))
        self.timestamp.signed.snapshot_meta = MetaFile(version=self.snapshot.signed.version)
        self.commit_timestamp(expiry)

    def commit_timestamp(self, expiry: Expiry = DEFAULT_EXPIRY) -> None:
        """The timestamp re-signed with a new version and expiry: the one file a board fetches when nothing changed."""
        self.timestamp.signed.version += 1
        self.timestamp.signed.expires = expiry.of("timestamp")
        self._sign(self.timestamp, "timestamp")
        write_public(self.folder, "metadata/timestamp.json", self.timestamp.to_bytes(JSONSerializer(compact=True)))

    def expires_within(self, role: str, days: float) -> bool:
        """Whether a role's signature ends within `days`."""
        md = {"targets": self.targets, "snapshot": self.snapshot, "timestamp": self.timestamp}[role]
        return md.signed.expires <= datetime.now(timezone.utc) + timedelta(days=days)
