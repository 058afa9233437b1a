"""The twelve-board rollout `1,25%,100%` by both engines, alternated in one run: `edgerl deploy --inventory` and
`ansible-playbook edgerl.board.rollout`, then Ansible's forks 5 against 12.

    python bench/fleet_engines.py [--rounds 2]

Starts twelve sshd on 127.0.0.1 (needs openssh-server and the `fleet` extra), each a board folder sharing one
device venv (installed by a first deploy to one board), as tests/deploy/fleet builds its lab. Each round, each engine
moves the fleet both ways (dqn -> stacked, stacked -> dqn: the same files and self-tests) and reruns once with
nothing to change; the order alternates between rounds so neither engine always runs on a warm cache.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

REPO = Path(__file__).resolve().parents[1]
# edgerl's own folders first: tests/host and tests/deploy would otherwise shadow host/ and deploy/.
sys.path[:0] = [str(REPO), str(REPO / "bench")]
sys.path += [str(REPO / "tests" / "deploy"), str(REPO / "tests"), str(REPO / "tests" / "deploy" / "fleet")]

from _bundles import bundle  # noqa: E402
from collection_world import ansible_env, install_collection  # noqa: E402
from conftest import _keygen, start_sshd  # noqa: E402
from fleet_world import make_fleet  # noqa: E402

import host.bundle.pipeline  # noqa: E402, F401  (imported before tests/deploy/conftest puts tests/ first)


class Lab:
    """The tests' twelve loopback boards (fleet_world.make_fleet) and the two engines run on them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        _keygen(root / "key")
        (root / "venvs").mkdir()
        world = SimpleNamespace(key=root / "key", venvs=root / "venvs",
                                known_line=lambda s: f"[127.0.0.1]:{s.port} {s.host_pub}\n")
        self.fleet = make_fleet(world, start_sshd, root, venv_key="")
        install_collection(root)

    def edgerl(self, bundle_dir: Path, *extra: str) -> float:
        return self._timed([sys.executable, "-m", "host.cli", "deploy", str(bundle_dir), "--inventory",
                            str(self.fleet.inventory), "--known-hosts", str(self.fleet.known_hosts),
                            "--ssh-config", "/dev/null", *extra], os.environ)

    def ansible(self, bundle_dir: Path, forks: int = 12) -> float:
        link = ["-e", f"edgerl_known_hosts={self.fleet.known_hosts}", "-e", "edgerl_ssh_config=/dev/null"]
        return self._timed(["ansible-playbook", "-i", str(self.fleet.inventory), "edgerl.board.rollout",
                            "-e", f"edgerl_bundle={bundle_dir}", *link],
                           {**ansible_env(self.root), "ANSIBLE_FORKS": str(forks)})

    def _timed(self, argv: list[str], env: dict[str, str]) -> float:
        started = time.perf_counter()
        done = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=self.root, timeout=1800)
        took = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(f"{argv[0]} failed: {(done.stdout + done.stderr)[-2000:]}")
        return took

    def stop(self) -> None:
        for server in self.fleet.servers.values():
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2, help="rounds of both engines, both ways (default 2)")
    args = parser.parse_args()
    a, b = bundle("dqn"), bundle("stacked")
    with tempfile.TemporaryDirectory() as tmp:
        lab = Lab(Path(tmp))
        try:
            print("installing the boards' venv (one board, then shared)", flush=True)
            first = lab.fleet.dirs["pi01"]
            subprocess.run([sys.executable, "-m", "host.cli", "deploy", str(a), "--to", f"local:{first}"],
                           check=True, capture_output=True)
            lab.edgerl(a)  # every board on dqn: the starting point
            times: dict[str, list[float]] = {"edgerl": [], "ansible": [], "edgerl rerun": [], "ansible rerun": [],
                                             "ansible forks 5": []}
            for r in range(args.rounds):
                engines = [("edgerl", lab.edgerl), ("ansible", lab.ansible)]
                for name, run in engines if r % 2 == 0 else engines[::-1]:
                    times[name].append(run(b))
                    times[f"{name} rerun"].append(run(b))
                    times[name].append(run(a))
                times["ansible forks 5"] += [lab.ansible(b, forks=5), lab.ansible(a, forks=5)]
                print(f"round {r}: " + ", ".join(f"{k} {v[-1]:.1f} s" for k, v in times.items()), flush=True)
            med = {k: statistics.median(v) for k, v in times.items()}
            print(f"12-board rollout 1,25%,100% (median of {len(times['edgerl'])}): edgerl deploy --inventory "
                  f"{med['edgerl']:.1f} s, ansible-playbook (forks 12) {med['ansible']:.1f} s: "
                  f"ansible/edgerl {med['ansible'] / med['edgerl']:.2f}x")
            print(f"idempotent rerun: edgerl {med['edgerl rerun']:.1f} s, ansible {med['ansible rerun']:.1f} s: "
                  f"ansible/edgerl {med['ansible rerun'] / med['edgerl rerun']:.2f}x")
            print(f"ansible forks 5 {med['ansible forks 5']:.1f} s vs forks 12 {med['ansible']:.1f} s: "
                  f"{med['ansible forks 5'] / med['ansible']:.2f}x")
        finally:
            lab.stop()


if __name__ == "__main__":
    main()
