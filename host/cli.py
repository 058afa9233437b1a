"""`edgerl`: the host command line. It only parses and dispatches; the work lives in the stages."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

from deploy.cli.channel_options import channel_parsers
from deploy.cli.options import board_parsers
from device.args import OneLineParser, output_file, output_folder
from device.args import positive as _positive
from device.manifest import EXIT_BAD_INPUT, EXIT_CODES_HELP, EXIT_INTERRUPTED, EXIT_OK, MANIFEST, EdgerlError
from host.errors import UsageError

NETWORKS = ("dqn", "stacked", "lstm")
"""The built-in networks of `--untrained` (host.policies.NETWORKS; not imported here, that loads torch)."""


def _export_parser(sub: argparse._SubParsersAction) -> None:
    e = sub.add_parser("export", help="any TorchRL policy -> bundle (pt2, AOTInductor, ONNX, golden, manifest)",
                       description="Export a policy to a bundle folder, then verify it. The policy comes from your "
                                   "own factory (--from FILE.py:FUNC, returning (policy, env) or (policy, None, "
                                   "example)), a run folder of `edgerl train`, or a built-in network (--untrained).",
                       epilog=EXIT_CODES_HELP)
    e.add_argument("source", nargs="?", type=Path, help="run folder or checkpoint.pt from `edgerl train`")
    e.add_argument("--from", dest="factory", metavar="FILE.py:FUNC",
                   help="your factory: FUNC() returns (policy, env) or (policy, None, example)")
    e.add_argument("--out", type=output_folder, required=True, help="bundle folder to write")
    e.add_argument("--untrained", action="store_true", help="export a freshly initialised built-in network")
    e.add_argument("--policy", choices=NETWORKS, default="dqn",
                   help="built-in network of an --untrained export (default dqn)")
    e.add_argument("--stochastic", action="store_true",
                   help="keep the policy's exploration (e-greedy, sampling) inside the graph (RANDOM mode)")
    e.add_argument("--epsilon", type=float, default=None, help="e-greedy rate of a stochastic built-in export")
    e.add_argument("--aoti", action=argparse.BooleanOptionalAction, default=False,
                   help="also compile an AOTInductor package, for this machine's CPU only (the board runs ONNX); "
                        "adds ~25 s (default: --no-aoti)")
    e.add_argument("--int8", action="store_true",
                   help="also make policy.int8.onnx (static QDQ), kept only if it plays as well as fp32; "
                        "a refused int8 model exits 3, with the fp32 bundle written and verified")
    e.add_argument("--no-verify", action="store_true", help="do not run `edgerl verify` afterwards")
    e.add_argument("--verify-steps", "--verify-frames", dest="verify_steps", type=_positive, default=1000,
                   help="steps of real play (or example input) for the verification (default 1000)")
    e.add_argument("--seed", type=int, default=0, help="initialisation seed of an --untrained export")


def _verify_parser(sub: argparse._SubParsersAction) -> None:
    v = sub.add_parser("verify", help="parity of ONNX, pt2 and AOTInductor through time on real inputs",
                       description="Check every backend against the eager TorchRL policy (rebuilt with --from) or, "
                                   "without it, the bundle's own torch.export program; exit 1 on disagreement.",
                       epilog=EXIT_CODES_HELP)
    v.add_argument("bundle", type=Path, help="the bundle folder to check")
    v.add_argument("--from", dest="factory", metavar="FILE.py:FUNC", help="rebuild the eager policy to compare with")
    v.add_argument("--steps", "--frames", dest="steps", type=_positive, default=1000,
                   help="steps of real inputs (default 1000)")
    v.add_argument("--seed", type=int, default=1, help="seed of the inputs' game (default 1)")

    r = sub.add_parser("replay", help="rebuild a board's game from its report and write a GIF",
                       description="Replay a `python -m device play` report on the host env; exit 1 if the "
                                   "replayed scores differ from the reported ones.", epilog=EXIT_CODES_HELP)
    r.add_argument("report", type=Path, help="report.json from the board")
    r.add_argument("bundle", type=Path, help="the bundle the board played")
    r.add_argument("--out", type=output_file, default=None, help="animated GIF to write")
    r.add_argument("--stride", type=_positive, default=2, help="draw every N-th agent step (default 2)")


def _train_parser(sub: argparse._SubParsersAction) -> None:
    tr = sub.add_parser("train", help="train a Pong policy with PQN (resumable, progress bar, CSV logs)",
                        description="Train with PQN (Parallel Q-learning on ale-py's vector env, collection "
                                    "overlapped with learning). Checkpoints atomically every few minutes; --resume "
                                    "continues where the last one stopped.", epilog=EXIT_CODES_HELP)
    tr.add_argument("--algo", choices=["pqn"], default="pqn", help="the training algorithm (pqn, the only one)")
    tr.add_argument("--frames", type=_positive, default=None,
                    help="emulator frames in total (default 16,000,000: what fits 2.5 h on two cores)")
    tr.add_argument("--out", type=output_folder, default=Path("runs/pong"), help="run folder (default runs/pong)")
    tr.add_argument("--resume", action="store_true", help="continue from the run folder's checkpoint")
    tr.add_argument("--envs", type=_positive, default=None, help="parallel games (default 16)")
    tr.add_argument("--seed", type=int, default=1, help="seed of the games and the initialisation (default 1)")
    tr.add_argument("--checkpoint-minutes", type=float, default=5.0,
                    help="minutes between atomic checkpoints (default 5)")
    tr.add_argument("--eval-episodes", type=int, default=0,
                    help="afterwards, play N episodes with the deterministic policy on the device's loop")

    ev = sub.add_parser("evaluate", help="play N games on the device loop and record the scores in the manifest",
                        description="Play one deterministic game per seed with the device's own loop (what the "
                                    "board runs) and write the scores into the bundle's manifest.",
                        epilog=EXIT_CODES_HELP)
    ev.add_argument("bundle", type=Path, help="the bundle folder whose scores go into its manifest")
    ev.add_argument("--episodes", type=_positive, default=10, help="games, one per seed (default 10)")
    ev.add_argument("--seed", type=int, default=100, help="first seed (default 100)")
    ev.add_argument("--max-steps", type=_positive, default=None, help="cut each game after N agent steps")

    qz = sub.add_parser("quantize", help="add an int8 model to a bundle, kept only if it plays as well as fp32",
                        description="Make policy.int8.onnx (static QDQ, calibrated on the policy's own games) and "
                                    "judge it: a game policy by its mean score over --episodes games on the "
                                    "device loop (same seeds as fp32, at most --max-score-loss lower), a sensor "
                                    "policy by max |d| of its outputs. The figures, agreement and value regret "
                                    "go in the manifest; a refused model exits 3 and the bundle keeps fp32 only.",
                        epilog=EXIT_CODES_HELP)
    qz.add_argument("bundle", type=Path, help="the bundle folder to add an int8 model to")
    qz.add_argument("--episodes", type=_positive, default=10, help="games each model plays (default 10)")
    qz.add_argument("--seed", type=int, default=100, help="seed of the games (default 100)")
    qz.add_argument("--max-score-loss", type=float, default=1.0,
                    help="how far int8's mean score may fall below fp32's (default 1 point)")
    qz.add_argument("--sensor-atol", type=float, default=0.05,
                    help="a sensor policy's int8 outputs may differ from fp32's by this, relative to "
                         "max(1, |output|) (default 0.05)")

    pm = sub.add_parser("promote", help="replace a shipped bundle only by one with a higher evaluated mean",
                        description="Compare the mean device-loop scores `edgerl evaluate` recorded in both "
                                    "manifests; copy CANDIDATE over --to only if it is higher (or --to is empty).",
                        epilog=EXIT_CODES_HELP)
    pm.add_argument("candidate", type=Path, help="an evaluated bundle folder")
    pm.add_argument("--to", type=Path, required=True, help="the shipped bundle folder, e.g. models/pong")

    pl = sub.add_parser("plot", help="learning curve of a run as PNG (return vs frames and vs wall time)",
                        description="Draw a run's learning curve from its episodes.csv.", epilog=EXIT_CODES_HELP)
    pl.add_argument("run", type=Path, help="the training run folder (its metrics.jsonl)")
    pl.add_argument("--out", type=output_file, default=None, help="PNG path (default RUN/learning_curve.png)")


def build_parser() -> argparse.ArgumentParser:
    """Every host subcommand and its options."""
    parser = OneLineParser(prog="edgerl", description="Train, export, verify and ship RL policies to "
                                                      "small boards.", epilog=EXIT_CODES_HELP)
    parser.add_argument("--verbose", action="store_true",
                        help="also show the libraries' own logs (paramiko's handshake tracebacks, torch's notices)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                help="what to do (each has its own --help)")
    _export_parser(sub)
    _verify_parser(sub)
    _train_parser(sub)
    board_parsers(sub)
    channel_parsers(sub)
    return parser


def _export(args: argparse.Namespace) -> int:
    from host.bundle.pipeline import ExportConfig, export_bundle  # deferred: torch loads in seconds

    sources = sum([bool(args.factory), bool(args.untrained), args.source is not None])
    if sources != 1:
        raise UsageError("give exactly one source: --from FILE.py:FUNC, a run folder, or --untrained")
    cfg = ExportConfig(out=args.out, source=args.source, factory=args.factory, untrained=args.untrained,
                       network=args.policy, stochastic=args.stochastic, epsilon=args.epsilon, aoti=args.aoti,
                       verify=not args.no_verify, verify_steps=args.verify_steps, int8=args.int8, seed=args.seed)
    what = args.factory or (f"untrained {args.policy}" if args.untrained else args.source)
    print(f"exporting {what} to {args.out}")
    export_bundle(cfg, progress=sys.stderr.isatty())
    if not args.no_verify:
        print(f"verify ok: {args.verify_steps} steps")
    return EXIT_OK


def _verify(args: argparse.Namespace) -> int:
    from host.bundle.pipeline import VerifyConfig, check_bundle  # deferred: torch

    print(f"verifying {args.bundle} on {args.steps} steps of real inputs")
    parity = check_bundle(VerifyConfig(args.bundle, steps=args.steps, seed=args.seed, progress=sys.stderr.isatty(),
                                       source=args.factory))
    print(f"verify ok: {parity['frames']} steps, {parity['episode_starts']} episode starts, mode {parity['mode']}, "
          f"reference {parity['reference']}")
    return EXIT_OK


def _train(args: argparse.Namespace) -> int:
    from host.checkpoint import CHECKPOINT  # deferred: torch
    from host.train.pqn import PQNConfig  # deferred: torch
    from host.train.trainer import train_pqn  # deferred: torch

    if args.resume and not (args.out / CHECKPOINT).is_file():
        raise UsageError(f"nothing to resume: {args.out / CHECKPOINT} does not exist")
    if not args.resume and (args.out / CHECKPOINT).is_file():
        raise UsageError(f"{args.out} already holds a run; pass --resume to continue it or choose another --out")
    given = {k: v for k, v in (("frames", args.frames), ("envs", args.envs)) if v is not None}
    cfg = PQNConfig(out=args.out, seed=args.seed, checkpoint_minutes=args.checkpoint_minutes, **given)
    run = train_pqn(cfg, resume=args.resume, progress=sys.stderr.isatty())
    print(f"run saved in {run}")
    if args.eval_episodes:
        from host.bundle.evaluate import evaluate_run  # deferred: torch

        scores = evaluate_run(run, args.eval_episodes)
        print(f"evaluation on the device loop: mean {sum(scores) / len(scores):+.1f} over {len(scores)} episodes")
    return EXIT_OK


def _evaluate(args: argparse.Namespace) -> int:
    from host.bundle.evaluate import EvaluateConfig, record_evaluation  # deferred: torch

    print(f"playing {args.episodes} games of {args.bundle} on the device loop")
    figures = record_evaluation(EvaluateConfig(args.bundle, args.episodes, args.seed, args.max_steps))
    print(f"mean score {figures['mean']:+.2f} over {figures['episodes']} games (worst {figures['min']:+.0f}); "
          f"recorded in {args.bundle / MANIFEST}")
    return EXIT_OK


def _quantize(args: argparse.Namespace) -> int:
    from host.bundle.quantize import QuantizeConfig, quantize_bundle  # deferred: onnxruntime.quantization

    print(f"quantizing {args.bundle} to int8 and judging it by play")
    quantize_bundle(QuantizeConfig(args.bundle, eval_episodes=args.episodes, eval_seed=args.seed,
                                   max_score_loss=args.max_score_loss, sensor_atol=args.sensor_atol))
    return EXIT_OK


def _promote(args: argparse.Namespace) -> int:
    from host.bundle.promote import PromoteConfig, promote  # deferred: torch

    _, why = promote(PromoteConfig(args.candidate, args.to))
    print(why)
    return EXIT_OK


def _plot(args: argparse.Namespace) -> int:
    from host.train.training_log import plot_run  # deferred: matplotlib and torchrl

    try:
        print(f"wrote {plot_run(args.run, args.out)}")
    except ValueError as err:
        raise UsageError(str(err)) from err
    return EXIT_OK


def _replay(args: argparse.Namespace) -> int:
    from host.bundle.replay import ReplayConfig, replay  # deferred: torch

    replay(ReplayConfig(args.report, args.bundle, args.out, args.stride))
    print("replay ok: scores match the report")
    return EXIT_OK


BOARD_COMMANDS = ("deploy", "run", "status", "rollback", "service", "sign", "trust", "data", "channel", "publish",
                  "enroll")


def _board(name: str, module: str = "commands") -> Callable[[argparse.Namespace], int]:
    """The board commands import paramiko; only they do, so `edgerl plot` works without the deploy extra."""

    def handler(args: argparse.Namespace) -> int:
        from deploy.cli import channel_commands, commands  # deferred: paramiko (and tuf) are the extras'

        return getattr(channel_commands if module == "channel" else commands, name)(args)

    return handler


def _quiet_libraries(verbose: bool) -> None:
    """Torch's own log notices are not the user's concern (export silences its CUDA one by name); warnings show.

    paramiko logs a failed handshake with its traceback from its transport thread, beside the one line edgerl
    says for it: only with --verbose.
    """
    logging.getLogger("torch").setLevel(logging.ERROR)
    if not verbose:
        logging.getLogger("paramiko").setLevel(logging.CRITICAL + 1)


def main(argv: list[str] | None = None) -> int:
    """Entry point: known failures become one line on stderr and their documented exit code."""
    args = build_parser().parse_args(argv)
    _quiet_libraries(args.verbose)
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(Path.home() / ".cache" / "edgerl" / "inductor"))
    handlers = {"export": _export, "verify": _verify, "replay": _replay, "train": _train, "plot": _plot,
                "promote": _promote, "evaluate": _evaluate, "quantize": _quantize,
                "deploy": _board("deploy_cmd"),
                "run": _board("run_cmd"), "status": _board("status_cmd"),
                "rollback": _board("rollback_cmd"), "service": _board("service_cmd"),
                "sign": _board("sign_cmd"), "trust": _board("trust_cmd"),
                "data": _board("data_cmd"), "channel": _board("channel_cmd", "channel"),
                "publish": _board("publish_cmd", "channel"), "enroll": _board("enroll_cmd", "channel")}
    try:
        return handlers[args.command](args)
    except ImportError as err:
        extra = ("channel" if args.command in BOARD_COMMANDS[-3:] else "deploy") if args.command in BOARD_COMMANDS \
            else "host"
        print(f"error: {err.name or err} is not installed; pip install 'edgerl[{extra}]' for `edgerl {args.command}`",
              file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        # Board commands report per board what an interrupt left there; elsewhere only files written
        # through a temporary name exist, so a half-written one cannot be left under its real name.
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except EdgerlError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code


if __name__ == "__main__":
    sys.exit(main())
