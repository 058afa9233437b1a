"""The options of the pull channel's commands: channel init|stage|refresh|status|poll, publish, enroll."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from deploy.agent.rollout import parse_stage, parse_wheel_kind
from deploy.cli.options import TARGET_HELP, ssh_args
from device.args import positive, positive_number
from device.manifest import EXIT_CODES_HELP


def stage_arg(text: str) -> float:
    """A stage: a percentage from 0 to 100."""
    try:
        return parse_stage(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def stage_or_halt(text: str) -> float | None:
    """A stage, or 'halt' (None)."""
    return None if text == "halt" else stage_arg(text)


def stages_arg(text: str) -> tuple[float, ...]:
    """'1%,10%,100%' -> (1.0, 10.0, 100.0), rising."""
    values = tuple(stage_arg(part) for part in text.split(","))
    if list(values) != sorted(set(values)):
        raise argparse.ArgumentTypeError(f"{text!r}: stages rise, each once (e.g. 1%,10%,100%)")
    return values


def max_fail_arg(text: str) -> str:
    """N boards or P% of the boards that reported."""
    try:
        value = float(text.removesuffix("%"))
    except ValueError:
        value = -1.0
    if value < 0 or (text.endswith("%") and value > 100):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of boards or a percentage (2, 2%)")
    return text


def span(text: str) -> float:
    """'10m', '30s', '2h' or plain seconds -> seconds."""
    units = {"s": 1, "m": 60, "min": 60, "h": 3600}
    number, unit = text.rstrip("smhin"), text[len(text.rstrip("smhin")):] or "s"
    try:
        value = float(number) * units[unit]
    except (ValueError, KeyError):
        value = -1.0
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a time span (30s, 10m, 2h)")
    return value


def systemd_span(text: str) -> str:
    """A systemd time span: 10min, 30s, 1h, 600."""
    if not re.fullmatch(r"[1-9][0-9]*(s|sec|m|min|h|hr|d)?", text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a time span systemd reads (30s, 10min, 1h)")
    return text


def channel_url(text: str) -> str:
    """An http(s) URL."""
    if not text.startswith(("https://", "http://")) or len(text) < 10:
        raise argparse.ArgumentTypeError(f"{text!r} is not a channel URL: https://server/path")
    return text.rstrip("/")


def wheel_kinds_arg(text: str) -> tuple[str, ...]:
    """'aarch64:3.11,x86_64:3.12' -> the kinds, each checked."""
    kinds = tuple(part.strip() for part in text.split(",") if part.strip())
    try:
        for kind in kinds:
            parse_wheel_kind(kind)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    if not kinds:
        raise argparse.ArgumentTypeError(f"{text!r} names no kind of board (e.g. aarch64:3.11)")
    return kinds


def channel_parsers(sub: argparse._SubParsersAction) -> None:
    """`edgerl channel ...`, `edgerl publish`, `edgerl enroll`."""
    c = sub.add_parser("channel", help="a TUF channel boards pull from: init, stage, refresh, status, poll",
                       description="A channel is a TUF repository in a folder (python-tuf), served as it is by any "
                                   "static server (nginx, an S3 bucket, a CDN); boards enrolled in it pull their "
                                   "releases and PUT their reports back.", epilog=EXIT_CODES_HELP)
    cs = c.add_subparsers(dest="action", required=True, metavar="ACTION", help="what to do with the channel")
    i = cs.add_parser("init", help="make a channel folder and its signing keys",
                      description="Write the four TUF roles (root, targets, snapshot, timestamp) into DIR, each "
                                  "with its own ed25519 key in KEYDIR (0600; keep KEYDIR off the server).",
                      epilog=EXIT_CODES_HELP)
    i.add_argument("dir", type=Path, help="the channel folder (new or empty): what the server serves")
    i.add_argument("--keys", type=Path, required=True, metavar="KEYDIR", help="where the private keys go")
    s = cs.add_parser("stage", help="grow the release's stage, or halt it",
                      description="Set the share of boards that take the channel's release (a stage only grows), "
                                  "or `halt`: no board that has not taken it yet will.", epilog=EXIT_CODES_HELP)
    s.add_argument("dir", type=Path, help="the channel folder")
    s.add_argument("stage", type=stage_or_halt, metavar="N%|halt", help="a percentage from 0 to 100, or halt")
    s.add_argument("--keys", type=Path, required=True, metavar="KEYDIR", help="the channel's keys")
    r = cs.add_parser("refresh", help="re-sign the timestamp (and what expires within 2 days): run it from cron",
                      description="TUF's timestamp expires in a day so that a frozen server is noticed; re-sign "
                                  "it (and snapshot or targets if they expire within 2 days).", epilog=EXIT_CODES_HELP)
    r.add_argument("dir", type=Path, help="the channel folder")
    r.add_argument("--keys", type=Path, required=True, metavar="KEYDIR", help="the channel's keys")
    t = cs.add_parser("status", help="one line per board from the reports it PUT",
                      description="The channel's release and stage, then each board that reported: its release, "
                                  "the outcome of its last change, how many releases behind, last seen.",
                      epilog=EXIT_CODES_HELP)
    t.add_argument("dir", type=Path, help="the channel folder")
    t.add_argument("--json", action="store_true", help="print everything as JSON")
    w = cs.add_parser("watch", help="move the release through its stages by the boards' reports; halt on failures",
                      description="Advance the release's stage when enough boards of the current one run it and "
                                  "it stood --soak; halt the channel when failures pass --max-fail (exit 6). Its "
                                  "state is the channel and the reports: kill and restart it at any time.",
                      epilog=EXIT_CODES_HELP)
    w.add_argument("dir", type=Path, help="the channel folder")
    w.add_argument("--keys", type=Path, required=True, metavar="KEYDIR", help="the channel's keys")
    w.add_argument("--stages", type=stages_arg, default=(1.0, 10.0, 100.0), metavar="LIST",
                   help="rising stages (default 1%%,10%%,100%%)")
    w.add_argument("--max-fail", type=max_fail_arg, default="0", metavar="N|P%",
                   help="failed boards tolerated, a number or a share of those that reported (default 0)")
    w.add_argument("--min-reports", type=positive, default=1, metavar="N",
                   help="boards that must run the release before the next stage (default 1)")
    w.add_argument("--soak", type=span, default=600.0, metavar="SPAN", help="time each stage stands (default 10m)")
    w.add_argument("--every", type=span, default=30.0, metavar="SPAN", help="time between looks (default 30s)")
    w.add_argument("--once", action="store_true", help="look once, act, and exit (for cron)")
    p = cs.add_parser("poll", help="run one poll of the board's agent now and print its outcome",
                      description="Run the enrolled board's pull agent once (as its timer would) and print the "
                                  "outcome line.", epilog=EXIT_CODES_HELP)
    p.add_argument("--on", required=True, metavar="TARGET", help=TARGET_HELP)
    ssh_args(p)
    _publish_and_enroll(sub)


def _publish_and_enroll(sub: argparse._SubParsersAction) -> None:
    b = sub.add_parser("publish", help="sign a bundle into a channel as its new release",
                       description="Add the bundle's release (the files `edgerl deploy` would push) to the channel "
                                   "as TUF targets, with its rollout stage; a bundle that failed verification is "
                                   "refused.", epilog=EXIT_CODES_HELP)
    b.add_argument("bundle", type=Path, help="the bundle folder to publish")
    b.add_argument("--channel", type=Path, required=True, metavar="DIR", help="the channel folder")
    b.add_argument("--keys", type=Path, required=True, metavar="KEYDIR", help="the channel's keys")
    b.add_argument("--stage", type=stage_arg, default=100.0, metavar="N%",
                   help="share of the boards that take it now (default 100%%)")
    b.add_argument("--wheels-for", type=wheel_kinds_arg, default=(), metavar="MACHINE:PY[,...]",
                   help="also sign the venv's wheels for these kinds of board (e.g. aarch64:3.11): a board with no "
                        "venv for the requirements (enrolled with --image, or new pins) installs it from them; "
                        "kept for later publishes")
    s = b.add_argument_group("service", "run the release as the board's service (as deploy --service)")
    s.add_argument("--service", action="store_true",
                   help="the board runs it under systemd and its own gate commits it or rolls it back")
    s.add_argument("--io", default=None, metavar="FILE.py:CLASS", help="with --service: your plant class")
    s.add_argument("--hz", type=positive_number, default=None, help="with --service: decisions per second")
    s.add_argument("--gate-seconds", type=positive_number, default=30.0,
                   help="with --service: healthy seconds before the board commits it (default 30)")
    s.add_argument("--max-overrun", type=float, default=0.05,
                   help="with --service: share of the gate's periods allowed to miss (default 0.05)")

    e = sub.add_parser("enroll", help="set a board up to pull its releases from a channel",
                       description="Install, once, the pull agent (python-tuf, pure Python), the venv the releases "
                                   "need, the channel's root.json and the board's report login. A local: board "
                                   "gets the agent without a timer: run `edgerl channel poll --on` (or cron). "
                                   "With --image, the same goes into a board image; its venv comes from the "
                                   "channel's wheels at the first poll.",
                       epilog=EXIT_CODES_HELP)
    where = e.add_mutually_exclusive_group(required=True)
    where.add_argument("--on", metavar="TARGET", help=TARGET_HELP)
    where.add_argument("--image", type=Path, metavar="DIR",
                       help="write the same into a board image's root folder (a mounted SD card's /) instead: "
                            "for boards no SSH reaches; needs --board-id")
    e.add_argument("--image-user", default="pi", metavar="USER", help="with --image: the image's login that runs "
                   "the agent (default pi)")
    e.add_argument("--channel", required=True, type=channel_url, metavar="URL", help="the channel's https URL")
    e.add_argument("--ca", type=Path, default=None, metavar="FILE", help="CA certificate of the channel's server")
    e.add_argument("--root", type=Path, default=None, metavar="FILE",
                   help="the channel's metadata/root.json to trust (default: fetched from URL, checked with --ca); "
                        "for a URL only the board can reach")
    e.add_argument("--every", type=systemd_span, default="10min", metavar="SPAN",
                   help="poll period, plus up to as much again at random (systemd time span; default 10min)")
    e.add_argument("--board-id", default=None, metavar="ID", help="the board's name in the channel (default: host)")
    e.add_argument("--htpasswd", type=Path, default=None, metavar="FILE",
                   help="add the board's report login to this auth_basic_user_file")
    e.add_argument("--keep", type=positive, default=3, help="releases kept on the board (default 3)")
    e.add_argument("--wheelhouse", action="store_true", help="download wheels here, install offline on the board")
    ssh_args(e)
