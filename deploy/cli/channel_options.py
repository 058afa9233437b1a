"""The options of the pull channel's commands: channel init|stage|refresh|status|poll, publish, enroll."""

from __future__ import annotations

import argparse
from pathlib import Path

from deploy.agent.rollout import parse_stage
from deploy.cli.options import TARGET_HELP, ssh_args
from device.args import positive
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


def channel_url(text: str) -> str:
    """An http(s) URL."""
    if not text.startswith(("https://", "http://")) or len(text) < 10:
        raise argparse.ArgumentTypeError(f"{text!r} is not a channel URL: https://server/path")
    return text.rstrip("/")


def channel_parsers(sub: argparse._SubParsersAction) -> None:
    """`edgerl channel ...`, `edgerl publish`, `edgerl enroll`."""
    c = sub.add_parser("channel", help="a TUF channel boards pull from: init, stage, refresh, status, poll",
                       description="A channel is a TUF repository in a folder (python-tuf), served as it is by any "
                                   "static server (nginx, an S3 bucket, a CDN); boards enrolled in it pull their "
                                   "releases and PUT their reports back.", epilog=EXIT_CODES_HELP)
    cs = c.add_subparsers(dest="action", required=True, metavar="ACTION")
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

    e = sub.add_parser("enroll", help="set a board up to pull its releases from a channel",
                       description="Install, once, the pull agent (python-tuf, pure Python), the venv the releases "
                                   "need, the channel's root.json and the board's report login. A local: board "
                                   "gets the agent without a timer: run `edgerl channel poll --on` (or cron).",
                       epilog=EXIT_CODES_HELP)
    e.add_argument("--on", required=True, metavar="TARGET", help=TARGET_HELP)
    e.add_argument("--channel", required=True, type=channel_url, metavar="URL", help="the channel's https URL")
    e.add_argument("--ca", type=Path, default=None, metavar="FILE", help="CA certificate of the channel's server")
    e.add_argument("--every", default="10min", metavar="SPAN", help="poll period (systemd time span; default 10min)")
    e.add_argument("--board-id", default=None, metavar="ID", help="the board's name in the channel (default: host)")
    e.add_argument("--htpasswd", type=Path, default=None, metavar="FILE",
                   help="add the board's report login to this auth_basic_user_file")
    e.add_argument("--keep", type=positive, default=3, help="releases kept on the board (default 3)")
    e.add_argument("--wheelhouse", action="store_true", help="download wheels here, install offline on the board")
    ssh_args(e)
