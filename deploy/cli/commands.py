"""The board and fleet commands of `edgerl`: deploy (in waves), run, status, rollback, service, sign, trust."""

from __future__ import annotations

import argparse
import json
import sys
import threading
from pathlib import Path
from typing import Any

from deploy import service, signing
from deploy.cli.shared import progress_bar, say, ssh_options
from deploy.fleet.canary import CanaryConfig
from deploy.fleet.canary import bar as canary_bar
from deploy.fleet.canary import judge as judge_canary
from deploy.fleet.canary import preload as preload_canary
from deploy.fleet.inventory import Board, load_boards
from deploy.fleet.pull import pull_fleet
from deploy.fleet.status import fleet_status, table
from deploy.fleet.waves import Outcome, Rollout, WaveConfig, parse_size, parse_waves, roll_out
from deploy.install import InstallConfig
from deploy.link.targets import DeployError
from deploy.pull import PullConfig, local_name
from deploy.release import DeployConfig, DeployResult, rollback, status
from deploy.remote_run import RunConfig, open_target, run_on
from device.manifest import (
    EXIT_FAILED_CHECK,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_ROLLOUT_STOPPED,
    IntegrityError,
    load_bundle,
)
from device.trust import check_verified


def boards_of(args: argparse.Namespace) -> list[Board]:
    """The boards a command acts on: --to / --on targets, then the --inventory's hosts (--limit applied)."""
    given = list(getattr(args, "to", None) or []) + ([args.on] if getattr(args, "on", None) else [])
    flag = "--to" if hasattr(args, "to") else "--on"  # each command's own word for its boards
    boards = load_boards(given, getattr(args, "inventory", None), getattr(args, "limit", None), flag)
    if given and getattr(args, "inventory", None):  # both is allowed (a lab beside the fleet), never silently
        print(f"acting on {len(boards)} boards: {len(given)} from {flag} and {len(boards) - len(given)} from "
              f"{args.inventory}", file=sys.stderr, flush=True)  # stderr: --json keeps stdout to itself
    return boards


def _service_config(args: argparse.Namespace) -> service.ServiceConfig | None:
    if args.service:
        if args.record_max_mb and not args.record:
            raise DeployError("--record-max-mb bounds a recording: give --record NAME too")
        return service.ServiceConfig(args.io, args.hz, args.gate_seconds, args.max_overrun, record=args.record,
                                     record_max_mb=args.record_max_mb).checked()
    if args.io or args.hz or args.record or args.record_max_mb:
        raise DeployError("--io, --hz and --record go with --service")
    return None


def _wave_config(args: argparse.Namespace) -> WaveConfig:
    if args.waves is None and args.canary_games:
        raise DeployError("--canary-games goes with --waves: the canary games are played by the first wave's boards "
                          "(e.g. --waves 1,25%,100%)")
    if args.waves is None and args.max_fail is None:
        return WaveConfig(("100%",), "100%", rollback_wave=False)  # every board on its own: each failure alone
    # --max-fail alone is one wave of every board, judged as a whole (the plain deploy's table names the rule).
    return WaveConfig(parse_waves(args.waves or "100%"), parse_size(args.max_fail or "0", "--max-fail"),
                      rollback_wave=args.rollback_wave, pause_s=args.wave_pause)


def _canary(args: argparse.Namespace):  # noqa: ANN202
    """The first wave's score gate (deploy/fleet/canary.py): N games on each of its boards, judged by a manifest."""
    if not args.canary_games:
        if args.canary_against:
            raise DeployError("--canary-against judges the canary games: give --canary-games N too")
        return None
    cfg = CanaryConfig(args.bundle, args.canary_games, args.canary_seed, Path(args.reports), args.score_margin,
                       args.canary_against)
    held = canary_bar(cfg)
    preload_canary()
    opts = ssh_options(args)

    def judge(board: Board, result: DeployResult) -> str | None:
        with open_target(board.target, board.options(opts)) as target:
            return judge_canary(target, cfg, held, say, board.name)[1]

    return judge


def _row(outcome: Outcome) -> str:
    moved = f"{outcome.before or '(none)'} -> {outcome.after or '(none)'}" if outcome.state != "not touched" else "-"
    result = outcome.result
    if outcome.state == "ok" and result is not None:
        venv = "venv reused" if result.venv_reused else "venv installed"
        gate = f", {result.gate['verdict']} after its gate" if result.gate else ""
        detail = (f"{result.uploaded_bytes} B sent, {result.reused_files} files reused, {venv}{gate}, "
                  f"{result.seconds:.1f} s")
    else:
        detail = outcome.why
    state = {"failed": "FAILED", "rolled back": "rolled back"}.get(outcome.state, outcome.state)
    return f"{outcome.board:<32} {state:<12} {moved}  {detail}"


def _exit(rollout: Rollout, single: bool) -> int:
    failed = [o for o in rollout.outcomes if o.state == "failed"]
    if single and failed:
        print(f"error: {failed[0].why}", file=sys.stderr, flush=True)
    if rollout.interrupted:
        return EXIT_INTERRUPTED
    if rollout.stopped:
        return EXIT_ROLLOUT_STOPPED
    if failed:
        return failed[0].error.exit_code if single and failed[0].error else EXIT_FAILED_CHECK
    return EXIT_OK


def deploy_cmd(args: argparse.Namespace) -> int:
    """Deploy to every board, in waves when asked; one line per board, and why the rollout stopped."""
    # A bad bundle, or one whose verification failed, is refused once, before any board is touched. No flag
    # overrides the second: debug an unverified bundle here (`python -m device play --allow-unverified`).
    check_verified(args.bundle, load_bundle(args.bundle))
    boards = boards_of(args)
    waves = _wave_config(args)
    cfg = DeployConfig(args.bundle, keep=args.keep, install=InstallConfig(wheelhouse=args.wheelhouse),
                       service=_service_config(args))
    canary = _canary(args)
    rollout = roll_out(boards, cfg, waves, ssh_options(args), say=say, canary=canary,
                       progress_for=progress_bar, cancel=threading.Event())
    print(f"\n{'board':<32} {'result':<12} before -> after  release / reason")
    for outcome in rollout.outcomes:
        print(_row(outcome))
    if rollout.stopped:
        print(f"rollout {rollout.stopped}")
    return _exit(rollout, len(boards) == 1)


def status_cmd(args: argparse.Namespace) -> int:
    """One board's JSON (--on), or the fleet's table (--inventory)."""
    if args.on and not args.inventory:
        with open_target(args.on, ssh_options(args)) as target:
            board = {**status(target), "trust": signing.trust_edit(target)["summary"]}
        print(json.dumps(board, indent=2), flush=True)
        if board.get("damaged"):
            raise IntegrityError(f"{target.name}: current release {board['current']} is damaged: "
                              f"{', '.join(board['damaged'])}; redeploy it (only its damaged files travel) or "
                              f"`edgerl rollback --on {target.name}`")
        return EXIT_OK
    rows = fleet_status(boards_of(args), ssh_options(args))
    print(json.dumps(rows, indent=2) if args.json else "\n".join(table(rows)))
    return EXIT_OK if all(r["answered"] and not r.get("damaged") for r in rows) else EXIT_FAILED_CHECK


def each_board(args: argparse.Namespace, act: Any) -> int:
    """Run `act(board, target)` on every board in turn; a failing board fails alone, the exit says so."""
    boards = boards_of(args)
    if len(boards) == 1:  # one board: its error is the command's, with its own exit code
        with open_target(boards[0].target, boards[0].options(ssh_options(args))) as target:
            act(boards[0], target)
        return EXIT_OK
    failed = 0
    for board in boards:
        try:
            with open_target(board.target, board.options(ssh_options(args))) as target:
                act(board, target)
        except DeployError as err:
            failed += 1
            print(f"{board.name}: FAILED {err}", flush=True)
    return EXIT_FAILED_CHECK if failed else EXIT_OK


def rollback_cmd(args: argparse.Namespace) -> int:
    """Switch current back to the previous release on each board."""
    return each_board(args, lambda b, t: print(f"{b.name}: current is now {rollback(t, say=say)}", flush=True))


def sign_cmd(args: argparse.Namespace) -> int:
    """Sign a bundle's file list with an SSH key."""
    fingerprint = signing.sign_bundle(args.bundle, args.key)
    print(f"signed {args.bundle} ({fingerprint}): {args.bundle}/SHA256SUMS and SHA256SUMS.sig")
    return EXIT_OK


def trust_cmd(args: argparse.Namespace) -> int:
    """Add, remove or list the keys a board's trust policy allows."""
    if args.add and args.remove:
        raise DeployError("give --add or --remove, not both (add the new key first, then remove the old one)")

    def act(board: Board, target: Any) -> None:
        reply = signing.trust_edit(target, args.add, args.remove)
        change = (f"added {reply['added']}" if reply.get("added") else "key already trusted") if args.add else \
            f"removed {reply['removed']}" if args.remove else reply.get("problem") or "unchanged"
        print(f"{board.name}: {change}; {reply['summary']}", flush=True)
        for key in reply["keys"]:
            print(f"  {key['fingerprint']}  {key['type']}  {key['principal']}")

    return each_board(args, act)


def run_cmd(args: argparse.Namespace) -> int:
    """Play on every board's current release and fetch the reports."""
    cfg = RunConfig(args.episodes, args.seed, args.max_steps, reports=args.reports, record=args.record)

    def act(board: Board, target: Any) -> None:
        report, local = run_on(target, cfg, on_line=lambda line: say(f"[{board.name}] {line}"))
        lat = report["policy_latency"]
        scores = " ".join(f"{e['score']:+.0f}" for e in report["episodes"])
        print(f"{board.name}: scores {scores} (mean {report['mean_score']:+.1f}); {report['steps_per_s']:.0f} "
              f"steps/s; policy p50 {lat['p50_ms']:.2f} ms p99 {lat['p99_ms']:.2f} ms; "
              f"{report['machine']['machine']}\nreport: {local}", flush=True)

    return each_board(args, act)


def service_cmd(args: argparse.Namespace) -> int:
    """`edgerl service ACTION --on TARGET`."""
    with open_target(args.on, ssh_options(args)) as target:
        if args.action == "status":
            answer = service.status(target)
            print(json.dumps(answer, indent=2) if args.json else "\n".join(service.status_lines(args.on, answer)))
        elif args.action == "logs":
            print("\n".join(service.logs(target, args.lines)))
        else:
            unit = service.control(target, args.action)
            print(f"{args.on}: {unit.get('ActiveState')} ({unit.get('SubState')})")
    return EXIT_OK


def data_cmd(args: argparse.Namespace) -> int:
    """`edgerl data pull`: every board's recordings, in parallel; a line per board."""
    if args.channel is not None:
        if args.on or args.inventory or args.prune:
            raise DeployError("--channel reads what boards pushed: give it without --on, --inventory or --prune "
                              "(a board prunes what the server holds by itself)")
        # Deferred: python-tuf's extra, only for the channel.
        from deploy.channel.data import pull_from_channel

        for result in pull_from_channel(args.channel, args.out, say):
            say(f"{result.board}: {result.fetched} shards copied ({result.bytes / 1e6:.2f} MB), {result.already} "
                f"already here -> {args.out / local_name(result.board)}")
        return EXIT_OK
    rows = pull_fleet(boards_of(args), PullConfig(args.out, args.prune), ssh_options(args), say)
    for name, result in rows:
        if isinstance(result, DeployError):
            say(f"{name}: FAILED {result}")
        else:
            say(f"{name}: {result.fetched} shards fetched ({result.bytes / 1e6:.2f} MB), {result.already} already "
                f"here, {result.pruned} pruned on the board -> {args.out / local_name(name)}")
    failed = [r for _, r in rows if isinstance(r, DeployError)]
    if len(rows) == 1 and failed:
        raise failed[0]
    return EXIT_FAILED_CHECK if failed else EXIT_OK
