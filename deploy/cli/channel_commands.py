"""The pull channel's commands: they parse nothing and print what the stages return."""

from __future__ import annotations

import argparse
import json

from deploy.channel.enroll import EnrollConfig, enroll, poll_now
from deploy.channel.image import ImageConfig, enroll_image
from deploy.channel.publish import PublishConfig, publish, refresh, stage
from deploy.channel.repo import Channel
from deploy.channel.status import channel_status, table
from deploy.channel.watch import WatchConfig, step, watch
from deploy.cli.shared import say, ssh_options
from deploy.install import InstallConfig
from deploy.link.targets import DeployError
from deploy.remote_run import open_target
from deploy.service import ServiceConfig
from device.manifest import EXIT_OK, EXIT_ROLLOUT_STOPPED


def channel_cmd(args: argparse.Namespace) -> int:
    """`edgerl channel init|stage|refresh|status|poll`."""
    if args.action == "init":
        channel = Channel.init(args.dir, args.keys)
        say(f"channel {channel.folder}: root, targets, snapshot, timestamp signed (keys in {args.keys}, 0600); "
            "serve the folder as it is")
    elif args.action == "stage":
        record = stage(args.dir, args.keys, args.stage)
        say(f"{record['release']}: " + ("halted" if record["halted"] else f"stage {record['stage_bp'] / 100:g}%"))
    elif args.action == "refresh":
        say(f"re-signed {', '.join(refresh(args.dir, args.keys))}")
    elif args.action == "watch":
        cfg = WatchConfig(args.dir, args.keys, args.stages, args.max_fail, args.min_reports, args.soak)
        done = step(cfg) if args.once else watch(cfg, args.every, say)
        if args.once:
            say(done.line)
        return EXIT_ROLLOUT_STOPPED if done.action in ("halted", "already halted") else EXIT_OK
    elif args.action == "status":
        status = channel_status(args.dir)
        print(json.dumps(status, indent=1) if args.json else "\n".join(table(status)), flush=True)
    else:
        with open_target(args.on, ssh_options(args)) as target:
            reply = poll_now(target)
        say(f"{target.name}: {reply['outcome']}: {reply['detail']}")
        return int(reply["exit_code"])
    return EXIT_OK


def publish_cmd(args: argparse.Namespace) -> int:
    """`edgerl publish B --channel DIR`."""
    if (args.io or args.hz) and not args.service:
        raise DeployError("--io and --hz go with --service")
    service = ServiceConfig(args.io, args.hz, args.gate_seconds, args.max_overrun).checked() if args.service else None
    record = publish(PublishConfig(args.bundle, args.channel, args.keys, args.stage, service=service,
                                   wheels_for=args.wheels_for), say)
    replaces = f", replacing {record['replaces']}" if record["replaces"] else ""
    say(f"published {record['release']} at stage {record['stage_bp'] / 100:g}%{replaces}")
    return EXIT_OK


def enroll_cmd(args: argparse.Namespace) -> int:
    """`edgerl enroll --on TARGET --channel URL`."""
    for flag, path in (("--ca", args.ca), ("--root", args.root)):
        if path is not None and not path.is_file():
            raise DeployError(f"{flag} {path} does not exist")
    cfg = EnrollConfig(args.channel, args.board_id, args.ca, args.every, args.keep, args.htpasswd,
                       InstallConfig(wheelhouse=args.wheelhouse), args.root)
    if args.image is not None:
        if not args.image.is_dir():
            raise DeployError(f"--image {args.image} is not a folder: give the board image's root folder")
        enroll_image(cfg, ImageConfig(args.image, args.image_user, args.board_dir), say)
        return EXIT_OK
    with open_target(args.on, ssh_options(args), create=True) as target:
        done = enroll(target, cfg, say)
    if args.on.startswith("local:"):
        say(f"{args.on} has no timer (a local: board): `edgerl channel poll --on {args.on}` polls it")
    elif done["timer"]:
        say(f"{done['board']}: {done['timer']} polls every {args.every} (plus up to as much again, at random)")
    return EXIT_OK
