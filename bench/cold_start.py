"""Cold start of the board's loop: the three imports, then edgerl's own part, before and after, one run.

    python bench/cold_start.py [--rounds 5]

Each round starts fresh processes (a restart after a crash is a cold start)
that time, in order: importing numpy + onnxruntime + ale_py; then edgerl's
part: the bundle check, the ORT session, the game set-up and the first
action. "before" sets the game up the old way (built, then seeded: the ROM is
loaded twice), "after" the way `play` and `serve` do now (seeded while built:
once). "sensor" is the cart bundle of examples/cart_service.py (no game).
One extra ROM load is timed in each game process: the goal is edgerl's part
<= one ROM load + 60 ms for a game bundle, <= 60 ms for a sensor bundle.
"""

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def child(mode: str, bundle: str) -> None:
    t0 = time.perf_counter()
    import ale_py  # noqa: F401
    import numpy as np
    import onnxruntime  # noqa: F401

    t1 = time.perf_counter()
    from device.atari import AtariGame, rom_path
    from device.manifest import load_bundle
    from device.policy import Policy

    manifest = load_bundle(Path(bundle))
    t2 = time.perf_counter()
    policy = Policy(Path(bundle), manifest)
    t3 = time.perf_counter()
    if mode == "sensor":
        policy.act(np.zeros(manifest.inputs[0].shape, dtype=np.float32))
        t4 = t5 = time.perf_counter()
        rom = 0.0
    else:
        if mode == "before":
            game = AtariGame(manifest.env, manifest.action_ids)
            game.seed(0)
        else:
            game = AtariGame(manifest.env, manifest.action_ids, seed=0)
        screen = game.reset()
        t4 = time.perf_counter()
        game.step(policy.act(screen))
        t5 = time.perf_counter()
        ale = ale_py.ALEInterface()
        ale.setLoggerMode(ale_py.LoggerMode.Error)
        r0 = time.perf_counter()
        ale.loadROM(rom_path(manifest.env.game))
        rom = time.perf_counter() - r0
    print(json.dumps({"imports": t1 - t0, "check": t2 - t1, "session": t3 - t2, "game": t4 - t3,
                      "first_action": t5 - t4, "edgerl": t5 - t1, "rom_load": rom}))


def measure(mode: str, bundle: Path) -> dict:
    done = subprocess.run([sys.executable, __file__, "--child", mode, str(bundle)], capture_output=True, text=True,
                          check=True, cwd=REPO)
    return json.loads(done.stdout.strip().splitlines()[-1])


def cart_bundle() -> Path:
    out = REPO / "build" / "bench" / "cart"
    if not (out / "manifest.json").is_file():
        subprocess.run([sys.executable, "-m", "host.cli", "export", "--from", "examples/cart_service.py:make",
                        "--out", str(out), "--no-aoti"], check=True, cwd=REPO, capture_output=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--bundle", type=Path, default=REPO / "models" / "pong")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    runs = {"before": [], "after": [], "sensor": []}
    sensor = cart_bundle()
    for _ in range(args.rounds):  # interleaved, so a noisy stretch hits every mode alike
        for mode in runs:
            runs[mode].append(measure(mode, sensor if mode == "sensor" else args.bundle))
    med = {mode: {k: statistics.median(r[k] for r in rs) * 1000 for k in rs[0]} for mode, rs in runs.items()}
    for mode, m in med.items():
        print(f"{mode:6s} imports {m['imports']:5.0f} ms | edgerl {m['edgerl']:5.0f} ms = check {m['check']:.0f} + "
              f"session {m['session']:.0f} + game {m['game']:.0f} + first action {m['first_action']:.0f}"
              + (f" | one ROM load {m['rom_load']:.0f} ms" if m["rom_load"] else ""))
    after, before, s = med["after"], med["before"], med["sensor"]
    print(f"game set-up after/before {after['game'] / before['game']:.2f}x; edgerl part after/before "
          f"{after['edgerl'] / before['edgerl']:.2f}x")
    print(f"goal game: edgerl {after['edgerl']:.0f} ms <= ROM load + 60 = {after['rom_load'] + 60:.0f} ms: "
          f"{'met' if after['edgerl'] <= after['rom_load'] + 60 else 'NOT met'}; goal sensor: {s['edgerl']:.0f} ms "
          f"<= 60 ms: {'met' if s['edgerl'] <= 60 else 'NOT met'}")


if __name__ == "__main__":
    main()
