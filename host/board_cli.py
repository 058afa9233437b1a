"""The board commands of `edgerl` (deploy, run, status, rollback): parse results, print tables."""

from __future__ import annotations

import argparse
import json
import sys
import threading
from pathlib import Path

from deploy import service
from deploy.fleet import deploy_fleet
from deploy.install import InstallConfig
from deploy.release import DeployConfig, rollback, status
from deploy.remote_run import RunConfig, open_target, run_on
from deploy.ssh import SshOptions
from deploy.targets import DeployError
from device.manifest import EXIT_FAILED_CHECK, EXIT_INTERRUPTED, EXIT_OK, load_bundle

_print_lock = threading.Lock()


def _say(line: str) -> None:
    with _print_lock:
        print(line, flush=True)


def ssh_options(args: argparse.Namespace) -> SshOptions:
    """SSH options from the shared flags."""
    return SshOptions(known_hosts=args.known_hosts, ssh_config=args.ssh_config, accept_new=args.accept_new,
                      identity=args.identity, board_dir=args.board_dir, silence_timeout=args.silence_timeout,
                      connect_timeout=min(15.0, args.silence_timeout))


def _targets(args: argparse.Namespace) -> list[str]:
    targets = list(args.to)
    if args.inventory:
        try:
            lines = Path(args.inventory).read_text().splitlines()
        except OSError as err:
            raise DeployError(f"cannot read inventory {args.inventory}: {err.strerror}") from err
        targets += [t.strip() for t in lines if t.strip() and not t.lstrip().startswith("#")]
    if not targets:
        raise DeployError("say where to deploy: --to TARGET (repeatable) or --inventory FILE")
    return targets


def _progress_bar(name: str):  # noqa: ANN202
    if not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    bars: dict[str, tqdm] = {}

    def update(file: str, n: int, total: int) -> None:
        bar = bars.get("all") or bars.setdefault("all", tqdm(total=total, unit="B", unit_scale=True, desc=name,
                                                             leave=False))
        bar.update(n)

    return update


def deploy_cmd(args: argparse.Namespace) -> int:
    """Deploy to every target in parallel; one board failing does not stop the others."""
    load_bundle(args.bundle)  # a bad bundle is refused once, before any board is touched
    targets = _targets(args)
    serving = None
    if args.service:
        if args.io and not args.hz:
            raise DeployError("--io needs --hz: how many decisions per second your plant wants")
        serving = service.ServiceConfig(args.io, args.hz, args.gate_seconds, args.max_overrun)
    elif args.io or args.hz:
        raise DeployError("--io and --hz go with --service")
    cfg = DeployConfig(args.bundle, keep=args.keep, install=InstallConfig(wheelhouse=args.wheelhouse),
                       service=serving)
    cancel = threading.Event()
    results = deploy_fleet(targets, cfg, ssh_options(args), say=_say, progress_for=_progress_bar, cancel=cancel)
    failed = 0
    print(f"\n{'board':<32} {'result':<8} {'release / reason'}")
    for text, result in results:
        if isinstance(result, DeployError):
            failed += 1
            print(f"{text:<32} {'FAILED':<8} {result}")
        else:
            venv = "venv reused" if result.venv_reused else "venv installed"
            gate = f", {result.gate['verdict']} after its gate" if result.gate else ""
            print(f"{text:<32} {'ok':<8} {result.release} ({result.uploaded_bytes} B sent, "
                  f"{result.reused_files} files reused, {venv}{gate}, {result.seconds:.1f} s)")
    if failed and len(targets) == 1:
        print(f"error: {results[0][1]}", file=sys.stderr)
    if cancel.is_set():
        return EXIT_INTERRUPTED
    if failed and len(targets) == 1:
        return results[0][1].exit_code
    return EXIT_FAILED_CHECK if failed else EXIT_OK


def run_cmd(args: argparse.Namespace) -> int:
    """Play on the board and print the summary."""
    cfg = RunConfig(args.episodes, args.seed, args.max_steps, reports=args.reports)
    with open_target(args.on, ssh_options(args)) as target:
        report, local = run_on(target, cfg, on_line=lambda line: _say(f"[{target.name}] {line}"))
    lat = report["policy_latency"]
    scores = " ".join(f"{e['score']:+.0f}" for e in report["episodes"])
    print(f"{args.on}: scores {scores} (mean {report['mean_score']:+.1f}); {report['steps_per_s']:.0f} steps/s; "
          f"policy p50 {lat['p50_ms']:.2f} ms p99 {lat['p99_ms']:.2f} ms; {report['machine']['machine']}")
    print(f"report: {local}")
    return EXIT_OK


def status_cmd(args: argparse.Namespace) -> int:
    """Print the board's state as JSON."""
    with open_target(args.on, ssh_options(args)) as target:
        print(json.dumps(status(target), indent=2))
    return EXIT_OK


def rollback_cmd(args: argparse.Namespace) -> int:
    """Switch current back to the previous release."""
    with open_target(args.on, ssh_options(args)) as target:
        print(f"{args.on}: current is now {rollback(target, say=_say)}")
    return EXIT_OK


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
