"""The options of the board and fleet commands: deploy (waves, canary), service, run, status, rollback, sign, trust."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from device.args import output_folder, positive, positive_number
from device.layout import BOARD_DIR
from device.manifest import EXIT_CODES_HELP


def seconds(text: str) -> float:
    """A number of seconds, 0 < S <= 86400."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= 86_400:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds: more than 0, at most 86400")
    return value


def recording_name(text: str) -> str:
    """A recording's folder name under the board's data/ (letters, digits, . _ -; not hidden)."""
    if not re.fullmatch(r"[A-Za-z0-9_-][A-Za-z0-9._-]*", text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a recording name: letters, digits, '.', '_', '-'")
    return text


TARGET_HELP = "[user@]host[:port], an ssh alias, or local:DIR"


def _deploy_parser(sub: argparse._SubParsersAction) -> None:
    d = sub.add_parser("deploy", help="push a bundle to boards as a verified release and switch to it",
                       description="Upload, verify sha256 on the board, install/reuse the venv, self-test, switch "
                                   "`current` atomically. Any failure leaves the old release current. With --waves, "
                                   "a fleet is updated wave after wave and the rollout stops on failures.",
                       epilog=EXIT_CODES_HELP)
    d.add_argument("bundle", type=Path, help="the bundle folder to deploy")
    d.add_argument("--to", action="append", default=[], metavar="TARGET", help=TARGET_HELP + " (repeat for a fleet)")
    _fleet_args(d)
    d.add_argument("--keep", type=positive, default=3, help="releases kept on the board (default 3)")
    d.add_argument("--wheelhouse", action="store_true", help="download wheels here, install offline on the board")
    w = d.add_argument_group("waves", "a rollout that stops on failure (Ansible's serial and max_fail_percentage)")
    w.add_argument("--waves", metavar="LIST", help="wave sizes in inventory order, N boards or P%% of the fleet, "
                                                   "the last repeated: e.g. 1,25%%,100%% (default: all at once)")
    w.add_argument("--max-fail", metavar="N|P%", default=None,
                   help="failed boards the rollout tolerates, a number or a share of the boards touched so far "
                        "(default with --waves: 0, the first failure stops it; without --waves or --max-fail each "
                        "board succeeds or fails alone)")
    w.add_argument("--no-rollback-wave", dest="rollback_wave", action="store_false",
                   help="leave the switched boards of the wave that stopped the rollout on the new release")
    w.add_argument("--wave-pause", type=float, default=0.0, metavar="S", help="seconds between waves (default 0)")
    w.add_argument("--canary-games", type=int, default=0, metavar="N",
                   help="play N games on each first-wave board; refuse the rollout when their mean is more than "
                        "--score-margin below the manifest's evaluation, or the host's replay disagrees")
    w.add_argument("--score-margin", type=float, default=2.0, help="points below the evaluated mean (default 2)")
    w.add_argument("--canary-against", type=Path, default=None, metavar="BUNDLE",
                   help="judge the canary by this bundle's evaluated mean instead of its own (a distilled student "
                        "by its teacher's)")
    w.add_argument("--canary-seed", type=int, default=0, help="emulator seed of the canary games (default 0)")
    w.add_argument("--reports", type=output_folder, default=Path("reports"), help="host folder for the canary reports")
    s = d.add_argument_group("service", "run the release under systemd")
    s.add_argument("--service", action="store_true",
                   help="run the release under systemd (python -m device serve, restarted on failure, started at "
                        "boot) and commit it only after it ran healthy for --gate-seconds; else the board rolls back")
    s.add_argument("--io", default=None, metavar="FILE.py:CLASS",
                   help="with --service: your plant class (observe/apply/close), shipped in the release")
    s.add_argument("--hz", type=positive_number, default=None,
                   help="with --service: decisions per second (default: the game's real-time rate; required with --io)")
    s.add_argument("--gate-seconds", type=float, default=30.0, help="with --service: healthy seconds before the "
                                                                    "board commits the release (default 30)")
    s.add_argument("--max-overrun", type=float, default=0.05, help="with --service: share of the gate's periods "
                                                                   "(--hz x --gate-seconds) allowed to miss their "
                                                                   "deadline (default 0.05)")
    s.add_argument("--record", type=recording_name, default=None, metavar="NAME",
                   help="with --service: record every decision into the board's data/NAME (edgerl data pull)")
    s.add_argument("--record-max-mb", type=positive_number, default=None, metavar="N",
                   help="with --record: keep data/NAME under N MB, deleting its oldest shards")
    ssh_args(d)


def _one_or_fleet(p: argparse.ArgumentParser) -> None:
    p.add_argument("--on", metavar="TARGET", help=TARGET_HELP)
    _fleet_args(p)
    ssh_args(p)


def _fleet_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--inventory", type=Path, metavar="INV",
                   help="an Ansible inventory (INI or YAML; needs edgerl[fleet]) or a file with one TARGET per line")
    p.add_argument("--limit", metavar="PATTERN", help="Ansible host pattern: only these hosts of the inventory")


def board_parsers(sub: argparse._SubParsersAction) -> None:
    """Every command that talks to boards."""
    _deploy_parser(sub)
    sv = sub.add_parser("service", help="the board's service: status, start, stop, restart, logs",
                        description="Look after the policy loop `deploy --service` installed: systemd's state, the "
                                    "loop's rate and overruns, the last gate; start/stop it; read its journal.",
                        epilog=EXIT_CODES_HELP)
    sv.add_argument("action", choices=["status", "start", "stop", "restart", "logs"],
                    help="status, start, stop, restart, or logs (the journal's last lines)")
    sv.add_argument("--on", required=True, metavar="TARGET", help=TARGET_HELP)
    sv.add_argument("--lines", type=positive, default=50, help="logs: journal lines (default 50)")
    sv.add_argument("--json", action="store_true", help="status: print the board's full answer as JSON")
    ssh_args(sv)

    u = sub.add_parser("run", help="play on a board's current release and fetch the report",
                       description="Play the board's current release (python -m device play there), stream its "
                                   "progress and bring the JSON report back; on every board of --inventory in turn.",
                       epilog=EXIT_CODES_HELP)
    u.add_argument("--episodes", type=positive, default=1, help="games to play (default 1)")
    u.add_argument("--seed", type=int, default=0, help="emulator seed (default 0)")
    u.add_argument("--max-steps", type=positive, default=None, help="cut each game after N agent steps")
    u.add_argument("--reports", type=output_folder, default=Path("reports"),
                   help="host folder for reports (default reports/)")
    u.add_argument("--record", type=recording_name, default=None, metavar="NAME",
                   help="record the games into the board's data/NAME (seed, actions, screen CRCs: edgerl data pull)")
    _one_or_fleet(u)

    t = sub.add_parser("status", help="a board's releases as JSON, or a table of every board of an inventory",
                       description="With --on: the board's releases, environment and trust policy as JSON. With "
                                   "--inventory: one line per board (release, committed, service, scores, free "
                                   "disk, trust, last seen), every board asked at once; exit 1 if one did not "
                                   "answer.", epilog=EXIT_CODES_HELP)
    t.add_argument("--json", action="store_true", help="with --inventory: every board's answer as JSON")
    _one_or_fleet(t)

    b = sub.add_parser("rollback", help="make the previous release current again",
                       description="Switch the board's `current` back to the previous release, atomically (and "
                                   "restart its service there).", epilog=EXIT_CODES_HELP)
    _one_or_fleet(b)

    g = sub.add_parser("sign", help="sign a bundle with your SSH key (boards with a trust policy require it)",
                       description="Write BUNDLE/SHA256SUMS (every file of the bundle and its sha256) and sign it "
                                   "with ssh-keygen -Y sign -n edgerl-bundle; the signature travels in the bundle.",
                       epilog=EXIT_CODES_HELP)
    g.add_argument("bundle", type=Path, help="the bundle folder to sign")
    g.add_argument("--key", type=Path, required=True, help="your private key (or its .pub, with the key in ssh-agent)")

    r = sub.add_parser("trust", help="the keys whose signed bundles a board runs: list, --add, --remove",
                       description="A board with a trust policy runs only releases signed by one of its keys; one "
                                   "without runs unsigned ones. Add the new key before removing the old one.",
                       epilog=EXIT_CODES_HELP)
    r.add_argument("--add", type=Path, metavar="KEY.pub", help="allow this public key")
    r.add_argument("--remove", metavar="FINGERPRINT", help="stop allowing the key with this SHA256:... fingerprint")
    _one_or_fleet(r)
    _data_parser(sub)


def _data_parser(sub: argparse._SubParsersAction) -> None:
    d = sub.add_parser("data", help="bring boards' recordings (serve/play --record) here: `edgerl data pull`",
                       description="The recordings boards keep under their data/ folder.", epilog=EXIT_CODES_HELP)
    actions = d.add_subparsers(dest="action", required=True, metavar="ACTION", help="what to do with them")
    a = actions.add_parser("pull", help="copy the boards' recordings here, each shard checked",
                           description="Pull every recording under each board's data/ folder into "
                                       "--out/<board>/<name>/, shard by shard, each checked against its sha256; a "
                                       "rerun fetches only what is missing. Load them with host.data.load_episodes.",
                           epilog=EXIT_CODES_HELP)
    a.add_argument("--out", type=output_folder, required=True, help="host folder for the recordings")
    a.add_argument("--prune", action="store_true", help="delete on the board the shards that arrived intact")
    a.add_argument("--channel", type=Path, default=None, metavar="DIR",
                   help="instead of boards: the recordings boards pushed into this channel folder (edgerl enroll)")
    _one_or_fleet(a)


def ssh_args(p: argparse.ArgumentParser) -> None:
    """How to reach boards."""
    p.add_argument("--known-hosts", type=Path, default=Path("~/.ssh/known_hosts"), help="known_hosts file to check")
    p.add_argument("--ssh-config", type=Path, default=Path("~/.ssh/config"), help="ssh config for aliases")
    p.add_argument("--accept-new", action="store_true",
                   help="trust an unknown host key and record it (a changed key is always refused)")
    p.add_argument("-i", "--identity", type=Path, default=None, help="private key file (the agent is used too)")
    p.add_argument("--board-dir", default=BOARD_DIR,
                   help=f"folder on the board, relative to home (default {BOARD_DIR}; edgerl_board_dir in an "
                        "inventory sets it per host)")
    p.add_argument("--silence-timeout", type=seconds, default=60.0, metavar="S",
                   help="give a board up after S seconds without any answer from it (default 60)")
