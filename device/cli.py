"""`python -m device play|selftest|bench BUNDLE`: the board's commands (stdlib argparse only)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from device import layout
from device.args import OneLineParser, output_file, output_folder, positive, positive_number
from device.manifest import (
    EXIT_CODES_HELP,
    EXIT_FAILED_CHECK,
    EXIT_INTERRUPTED,
    EXIT_OK,
    MANIFEST,
    BundleError,
    EdgerlError,
)
from device.model_choice import INT8_MODES
from device.trust import ALLOW_UNVERIFIED

STARTED = time.monotonic()
"""When this process had the CLI loaded: serve's cold start (to the first action) counts from here."""


def _serve_parser(sub: argparse._SubParsersAction) -> None:
    v = sub.add_parser("serve", help="run the policy at a fixed rate on its game or your own I/O, until stopped",
                       description="Run the policy at a fixed rate (absolute deadlines; missed periods are skipped, "
                                   "not caught up): on the bundle's game at its real-time rate, or on your plant "
                                   "(--io FILE.py:CLASS with observe(), apply(action) and optional close()). "
                                   "Timing goes to --status once a second; under systemd it sends READY=1 and "
                                   "WATCHDOG=1.", epilog=EXIT_CODES_HELP)
    v.add_argument("bundle", type=Path, help="bundle folder, or a deployed release folder (its service.json applies)")
    v.add_argument("--io", default=None, metavar="FILE.py:CLASS", help="your plant instead of the bundle's game")
    v.add_argument("--hz", type=positive_number, default=None,
                   help="decisions per second (default: the game's real time; required with --io)")
    v.add_argument("--seconds", type=positive_number, default=None,
                   help="stop after this long (default: until stopped)")
    v.add_argument("--status", type=output_file, default=None,
                   help="write the timing figures here as JSON, once a second (its folder must exist)")
    v.add_argument("--seed", type=int, default=0, help="emulator seed of a game run (default 0)")
    v.add_argument("--threads", type=positive, default=None, help="onnxruntime intra-op threads (default 1)")
    v.add_argument("--int8", **INT8_ARG)
    v.add_argument("--record", type=output_folder, default=None, metavar="DIR",
                   help="record every decision into DIR (a game's actions and screen CRCs; a plant's observations, "
                        "actions and outcome()) for `edgerl data pull`; off the loop's clock")
    v.add_argument("--record-max-mb", type=positive_number, default=None, metavar="N",
                   help="delete the oldest recorded shards to keep DIR under N MB (default: no bound)")
    v.add_argument("--clip-actions", action="store_true",
                   help="clip a continuous action into the bundle's bounds (default: an action outside them "
                        "stops the loop, exit 4, and is never applied)")


INT8_ARG = {"nargs": "?", "const": "on", "default": "auto", "choices": INT8_MODES, "metavar": "on|off|auto",
            "help": "the bundle's int8 model: auto (default) runs the one this board's self-test timed faster, of "
                    "those that passed on the host; --int8 alone is on"}


def build_parser() -> argparse.ArgumentParser:
    """The board CLI's arguments."""
    parser = OneLineParser(prog="python -m device",
                           description="Run an edgerl bundle on this board: play its game, self-test it, "
                                       "or time its loop. Needs only numpy, onnxruntime and ale-py.",
                           epilog=EXIT_CODES_HELP)
    parser.add_argument("--allow-unverified", action="store_true",
                        help="run a bundle whose verification failed (its manifest's parity); for debugging only")
    sub = parser.add_subparsers(dest="command", required=True, help="what to do (each has its own --help)")

    p = sub.add_parser("play", help="play the bundle's game with its policy and write a JSON report",
                       description="Play the bundle's Atari game with its policy (the training env's semantics) "
                                   "and report scores, speed and latency.", epilog=EXIT_CODES_HELP)
    p.add_argument("bundle", type=Path, help="bundle folder (manifest.json, policy.onnx, golden.npz), or a "
                   "deployed release folder such as ~/edgerl/current")
    p.add_argument("--episodes", type=positive, default=1, help="episodes to play (default 1)")
    p.add_argument("--seed", type=int, default=0, help="emulator seed for the whole run (default 0)")
    p.add_argument("--max-steps", type=positive, default=None, help="cut each episode after this many agent steps")
    p.add_argument("--report", type=output_file, default=None, help="write the JSON report here (atomically)")
    p.add_argument("--threads", type=positive, default=None, help="onnxruntime intra-op threads (default 1)")
    p.add_argument("--int8", **INT8_ARG)
    p.add_argument("--quiet", action="store_true", help="no per-episode progress lines")
    p.add_argument("--record", type=output_folder, default=None, metavar="DIR",
                   help="record every step (seed, actions, rewards, screen CRCs) into DIR for `edgerl data pull`")

    s = sub.add_parser("selftest", help="check checksums and run the golden frames on this hardware",
                       description="Check every file's sha256, the model's I/O, the game it will play, and that "
                                   "the golden inputs give the recorded outputs here; exit 1 if they do not.",
                       epilog=EXIT_CODES_HELP)
    s.add_argument("bundle", type=Path, help="bundle folder, or a deployed release folder")
    s.add_argument("--threads", type=positive, default=None, help="onnxruntime intra-op threads (default 1)")

    _serve_parser(sub)

    b = sub.add_parser("bench", help="time the control loop and its parts",
                       description="Time the full loop, then the emulator alone and the policy alone; print JSON.",
                       epilog=EXIT_CODES_HELP)
    b.add_argument("bundle", type=Path, help="bundle folder, or a deployed release folder")
    b.add_argument("--steps", type=positive, default=2000, help="agent steps per round (default 2000)")
    b.add_argument("--threads", type=positive, default=None, help="onnxruntime intra-op threads (default 1)")
    b.add_argument("--int8", **INT8_ARG)
    return parser


def bundle_of(path: Path) -> Path:
    """The bundle a path names: a bundle folder as given, or a deployed release's (`python -m device play current`)."""
    if not (path / MANIFEST).is_file() and (path / layout.BUNDLE_DIR / MANIFEST).is_file():
        return path / layout.BUNDLE_DIR
    return path


def board_of(bundle: Path) -> Path | None:
    """The board folder a deployed bundle lives in (it holds releases/ and the current link), or None."""
    for folder in Path(bundle).resolve().parents:
        if (folder / layout.RELEASES).is_dir() and (folder / layout.CURRENT).is_symlink():
            return folder
    return None


def warn_outside_data(bundle: Path, record: Path | None) -> None:
    """A recording of a deployed bundle that `edgerl data pull` will not find is said so, once, before it starts."""
    board = board_of(bundle) if record is not None else None
    data = board / layout.DATA if board is not None else None
    if data is not None and data.resolve() not in Path(record).resolve().parents:
        print(f"note: recording into {record}, outside this board's {data}: `edgerl data pull` reads only "
              f"{data}/NAME (use --record {data}/NAME)", file=sys.stderr, flush=True)


def _run(args: argparse.Namespace) -> int:
    if args.command in ("play", "selftest", "bench"):
        args.bundle = bundle_of(args.bundle)
    if args.command in ("play", "serve"):
        warn_outside_data(args.bundle, args.record)
    if args.command == "play":
        from device.play import PlayConfig, play  # deferred: numpy, onnxruntime and ale-py load in seconds

        cfg = PlayConfig(args.bundle, args.episodes, args.seed, args.max_steps, args.threads, args.int8, args.report,
                         args.record)
        say = None if args.quiet else (lambda line: print(line, file=sys.stderr, flush=True))
        report = play(cfg, progress=say)
        lat = report["policy_latency"]
        print(
            f"mean score {report['mean_score']:+.1f} over {len(report['episodes'])} episode(s); "
            f"{report['steps_per_s']:.0f} steps/s; policy p50 {lat['p50_ms']:.2f} ms p99 {lat['p99_ms']:.2f} ms"
        )
        return 0
    if args.command == "selftest":
        from device.selftest import selftest  # deferred, as play

        result = selftest(args.bundle, args.threads)
        verdict = "ok" if result.ok else "FAILED: " + "; ".join(result.problems)
        if result.choice is not None:  # before the verdict line, which callers read as the last one
            print(f"model: {result.choice.reason}")
        print(
            f"selftest {result.bundle_id}: {result.frames} golden frames, max |diff| {result.max_abs_diff:.3g} "
            f"(tolerance {result.atol:g}), actions {result.action_agreement:.0%}: {verdict}"
        )
        return EXIT_OK if result.ok else EXIT_FAILED_CHECK
    if args.command == "serve":
        return _serve(args)
    from device.bench import BenchConfig, bench  # deferred, as play

    print(json.dumps(bench(BenchConfig(args.bundle, args.steps, 0, args.threads, args.int8)), indent=2))
    return 0


def _serve(args: argparse.Namespace) -> int:
    from device.serve import ServeConfig, serve  # deferred, as play

    if args.record_max_mb is not None and args.record is None:
        raise BundleError("--record-max-mb bounds a recording: give --record DIR too")
    cfg = ServeConfig(args.bundle, args.io, args.hz, args.seconds, args.status, args.seed, args.threads,
                      clip=args.clip_actions, record=args.record, record_max_mb=args.record_max_mb, int8=args.int8)
    status = serve(cfg, STARTED)
    period = status.get("period_ms", {})
    print(f"{status['state']}: {status['decisions']} decisions at {status.get('achieved_hz', 0):.2f} Hz "
          f"(target {status.get('target_hz', 0):g}), {status.get('overruns', 0)} overruns, period p99 "
          f"{period.get('p99', 0):.2f} ms max {period.get('max', 0):.2f} ms", file=sys.stderr)
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """Entry point: one line and a non-zero exit code for any bad input."""
    args = build_parser().parse_args(argv)
    if args.allow_unverified:
        os.environ[ALLOW_UNVERIFIED] = "1"  # read where every command loads its bundle (device.trust)
    try:
        return _run(args)
    except EdgerlError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
