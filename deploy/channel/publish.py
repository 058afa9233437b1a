"""`edgerl publish` and `edgerl channel stage|refresh`: a release and its rollout, signed into the channel.

A release is exactly what `edgerl deploy` pushes (deploy/release.py's files, SHA256SUMS and release id), so a
board that pulls runs the same bytes as one that was pushed to. The rollout is the `custom["edgerl"]` of the
target `rollout.json`: signed by the targets key like the files it names.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuf.api.metadata import TargetFile

from deploy.agent.rollout import (
    RELEASES_PREFIX,
    ROLLOUT_TARGET,
    SUMS_NAME,
    WHEELS_PREFIX,
    basis_points,
    parse_wheel_kind,
    release_target,
    wheel_target,
)
from deploy.channel.keys import ChannelError
from deploy.channel.repo import DEFAULT_EXPIRY, Channel, Expiry, write_public
from deploy.install import InstallConfig, download_wheels, pinned_requirements, venv_key
from deploy.release import release_files, release_id, sums_text
from deploy.service import ServiceConfig, release_extras
from device.manifest import load_bundle
from device.trust import check_verified

KEEP_RELEASES = 3
"""Releases whose targets stay signed in the channel (a board still fetching one finishes)."""
HISTORY = 50


@dataclass(frozen=True)
class PublishConfig:
    """What `edgerl publish` puts into the channel."""

    bundle: Path
    channel: Path
    keys: Path
    stage: float = 100.0
    """Share of the boards (by a stable hash of board and release) that take the release."""
    requirements: tuple[str, ...] | None = None
    """The board's venv (default: the host's numpy, onnxruntime, ale-py: the versions verify ran)."""
    service: ServiceConfig | None = None
    """Run the release as the board's service, judged by the board's own health gate (as `deploy --service`)."""
    wheels_for: tuple[str, ...] = ()
    """Kinds of board ('aarch64:3.11') whose venv's wheels the channel carries, added to those it carried."""
    wheel_cache: Path = InstallConfig().cache


def rollout(channel: Channel) -> dict[str, Any] | None:
    """The channel's current rollout record, or None before the first publish."""
    info = channel.targets.signed.targets.get(ROLLOUT_TARGET)
    return dict(info.custom.get("edgerl", {})) if info else None


def _add_file(channel: Channel, path: str, data: bytes, custom: dict[str, Any] | None = None) -> TargetFile:
    """A target: its bytes under their hash-prefixed name, its length and sha256 in the targets role."""
    info = TargetFile.from_data(path, data, ["sha256"])
    if custom is not None:
        info.unrecognized_fields["custom"] = custom
    folder, _, name = path.rpartition("/")
    on_disk = Path("targets", folder, f"{info.hashes['sha256']}.{name}")
    if not (channel.folder / on_disk).is_file():  # named by content: never overwritten, a board mid-download keeps it
        write_public(channel.folder, on_disk, data)
    channel.targets.signed.targets[path] = info
    return info


def set_rollout(channel: Channel, record: dict[str, Any]) -> None:
    """Sign a new rollout record (its file holds the same JSON as its `custom`)."""
    _add_file(channel, ROLLOUT_TARGET, json.dumps(record, sort_keys=True).encode(), {"edgerl": record})


def _forget_old_targets(channel: Channel, releases: list[str], venvs: list[str]) -> None:
    """Only the last releases and the current venvs' wheels stay signed (their files stay on disk)."""
    for path in list(channel.targets.signed.targets):
        parts = path.split("/")
        if len(parts) > 2 and ((parts[0] == RELEASES_PREFIX and parts[1] not in releases)
                               or (parts[0] == WHEELS_PREFIX and parts[1] not in venvs)):
            del channel.targets.signed.targets[path]


def add_wheels(channel: Channel, requirements: list[str], kinds: list[str], cache: Path,
               say: Callable[[str], None]) -> dict[str, list[str]]:
    """Each kind of board's wheels for the requirements as targets; {venv key: wheel names}."""
    wheels = {}
    for kind in kinds:
        machine, python = parse_wheel_kind(kind)
        board = {"machine": machine, "python": python}
        key = venv_key(requirements, board)
        say(f"wheels for {kind} boards ({' '.join(requirements)})")
        folder = download_wheels(requirements, board, InstallConfig(wheelhouse=True, cache=cache), key)
        names = sorted(p.name for p in folder.glob("*.whl"))
        for name in names:
            _add_file(channel, wheel_target(key, name), (folder / name).read_bytes())
        wheels[key] = names
    return wheels


def publish(cfg: PublishConfig, say: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """Add the bundle as a release, staged to `cfg.stage` percent of the boards; returns the rollout record."""
    check_verified(cfg.bundle, load_bundle(cfg.bundle))
    for kind in cfg.wheels_for:
        try:
            parse_wheel_kind(kind)
        except ValueError as err:
            raise ChannelError(str(err)) from None
    channel = Channel(cfg.channel, cfg.keys)
    files = release_files(cfg.bundle, release_extras(cfg.service) if cfg.service else None)
    sums = sums_text(files)
    rid = release_id(cfg.bundle, sums)
    before = rollout(channel) or {}
    if before.get("release") == rid:
        raise ChannelError(f"{rid} is already the channel's release (stage {before['stage_bp'] / 100:g}%): change its "
                           "stage with `edgerl channel stage`")
    for name, local in sorted(files.items()):
        _add_file(channel, release_target(rid, name), local.read_bytes())
    _add_file(channel, release_target(rid, SUMS_NAME), sums.encode())
    history = [rid, *[r for r in before.get("history", []) if r != rid]][:HISTORY]
    requirements = list(cfg.requirements or pinned_requirements(InstallConfig()))
    kinds = sorted({*before.get("wheel_kinds", []), *cfg.wheels_for})
    record = {"release": rid, "stage_bp": basis_points(cfg.stage), "halted": False, "replaces": before.get("release"),
              "requirements": requirements, "published": int(time.time()), "history": history,
              "wheel_kinds": kinds, "wheels": add_wheels(channel, requirements, kinds, cfg.wheel_cache, say)}
    if cfg.service:  # strings: TUF's canonical JSON has no floats, and the board's gate op takes words
        record["gate"] = {"seconds": repr(float(cfg.service.gate_seconds)),
                          "max_overrun": repr(float(cfg.service.max_overrun))}
    set_rollout(channel, record)
    _forget_old_targets(channel, history[:KEEP_RELEASES], list(record["wheels"]))
    channel.commit_targets()
    return record


def stage(channel_dir: Path, keydir: Path, value: float | None) -> dict[str, Any]:
    """Move the current release's stage (None: halt it; boards outside the stage then never take it)."""
    channel = Channel(channel_dir, keydir)
    record = rollout(channel)
    if record is None:
        raise ChannelError(f"{channel_dir} has no release yet: `edgerl publish BUNDLE --channel {channel_dir}`")
    if value is None:
        record["halted"] = True
    else:
        if basis_points(value) < record["stage_bp"]:
            raise ChannelError(f"a stage only grows ({record['stage_bp'] / 100:g}% -> {value:g}% would not take the "
                               "release back from boards that have it); halt the channel instead")
        record.update(stage_bp=basis_points(value), halted=False)
    record["changed"] = int(time.time())
    set_rollout(channel, record)
    channel.commit_targets()
    return record


def refresh(channel_dir: Path, keydir: Path, within_days: float = 2.0, expiry: Expiry = DEFAULT_EXPIRY) -> list[str]:
    """Re-sign what expires soon: the timestamp always, snapshot and targets when within `within_days`."""
    channel = Channel(channel_dir, keydir)
    if channel.expires_within("targets", within_days):
        channel.commit_targets(expiry)
        return ["targets", "snapshot", "timestamp"]
    if channel.expires_within("snapshot", within_days):
        channel.commit_snapshot(expiry)
        return ["snapshot", "timestamp"]
    channel.commit_timestamp(expiry)
    return ["timestamp"]
