"""First deploy vs policy-only redeploy to a loopback SSH board, side by side in one run.

    python bench/redeploy.py

Starts its own sshd on 127.0.0.1 (needs openssh-server) with throwaway keys.
The first deploy reuses an installed venv, so the ratio isolates transfer,
verification and self-test from pip.
"""

import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO / "tests" / "deploy"))

from _bundles import bundle  # noqa: E402
from conftest import _keygen, start_sshd  # noqa: E402

from deploy.link.ssh import SshOptions, SshTarget  # noqa: E402
from deploy.release import DeployConfig, deploy  # noqa: E402


def main() -> None:
    stacked, lstm = bundle("stacked"), bundle("lstm")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        _keygen(root / "key")
        server = start_sshd(root / "sshd", root / "key.pub")
        try:
            (root / "known_hosts").write_text(f"[127.0.0.1]:{server.port} {server.host_pub}\n")
            opts = SshOptions(known_hosts=root / "known_hosts", ssh_config=root / "none", identity=root / "key",
                              board_dir=str(root / "board"))
            import getpass

            rounds = []
            with SshTarget(getpass.getuser(), "127.0.0.1", server.port, opts) as target:
                deploy(target, DeployConfig(stacked), say=lambda _: None)  # installs the venv once
                for _ in range(3):
                    # Full release: the board has no release at all (only the venv).
                    target.run(["rm", "-rf", target.path("releases"), target.path("current"),
                                target.path("previous"), target.path("incoming")])
                    first = deploy(target, DeployConfig(stacked), say=lambda _: None)
                    # Policy-only redeploy: device code and venv unchanged.
                    re = deploy(target, DeployConfig(lstm), say=lambda _: None)
                    rounds.append((first.seconds, first.uploaded_bytes, re.seconds, re.uploaded_bytes))
            for i, (fs, fb, rs, rb) in enumerate(rounds):
                print(f"round {i}: full release {fs:.2f} s ({fb / 1e6:.2f} MB sent) | policy-only redeploy "
                      f"{rs:.2f} s ({rb / 1e6:.2f} MB sent) | full/redeploy {fs / rs:.2f}x")
            best = min(r[2] for r in rounds)
            print(f"policy-only redeploy over loopback SSH: best {best:.2f} s (goal <= 3 s)")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
