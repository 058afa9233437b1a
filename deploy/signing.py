"""Bundles signed with the SSH keys users already have, and the board's list of keys it trusts.

`edgerl sign B --key ~/.ssh/id_ed25519` writes B/SHA256SUMS (manifest.json
and every file the manifest names) and signs it with `ssh-keygen -Y sign -n
edgerl-bundle`; both files travel in the release. `edgerl trust --on T
--add KEY.pub` gives the board a trust policy (device/trust.py checks it on
the board, deploy/board/trust.py edits it there), over the same
host-key-checked connection every deploy uses.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from deploy import board_client
from deploy.link.targets import DeployError, Target
from device import trust
from device.manifest import EXIT_UNTRUSTED, creation_mode, load_bundle


class Untrusted(DeployError):
    """The board's trust policy refuses the release; nothing of it ran and the old release is still current."""

    exit_code = EXIT_UNTRUSTED


def sign_bundle(bundle: Path, key: Path) -> str:
    """Write the bundle's SHA256SUMS and its signature; the signing key's fingerprint."""
    manifest = load_bundle(bundle)  # never sign files that already fail their own checksums
    exe = shutil.which("ssh-keygen")
    if exe is None:
        raise DeployError("signing needs OpenSSH's ssh-keygen: apt-get install openssh-client")
    key = Path(key).expanduser()
    if not key.is_file():
        raise DeployError(f"no key at {key}: give your private key (or its .pub with the key in ssh-agent)")
    # The new sums are signed beside the bundle's own and renamed in only once signed: a failed signing (a
    # passphrase and no agent) leaves an already signed bundle exactly as it was, still signed.
    fd, tmp = tempfile.mkstemp(prefix=".sums-", dir=bundle)
    new_sums, new_sig = Path(tmp), Path(tmp + ".sig")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(trust.bundle_sums(Path(bundle), sorted(manifest.files)))
        new_sums.chmod(creation_mode())  # as any file of the bundle, not mkstemp's 0600
        # A passphrase is asked for on the terminal by ssh-keygen itself, never passed through us.
        done = subprocess.run([exe, "-Y", "sign", "-f", str(key), "-n", trust.NAMESPACE, str(new_sums)],
                              stdin=None, capture_output=True, text=True, timeout=300)
        if done.returncode != 0 or not new_sig.is_file():
            detail = (done.stderr.strip().splitlines() or ["ssh-keygen failed"])[-1]
            raise DeployError(f"signing {bundle} with {key} failed: {detail}; the bundle is unchanged")
        os.replace(new_sig, Path(bundle) / trust.SIGNATURE)  # what is signed is the sums' bytes, not their name
        os.replace(new_sums, Path(bundle) / trust.BUNDLE_SUMS)
    finally:
        new_sums.unlink(missing_ok=True)
        new_sig.unlink(missing_ok=True)
    public = key if key.suffix == ".pub" else key.with_name(key.name + ".pub")
    if public.is_file():
        return trust.fingerprint(public.read_text().split()[1])
    return "the key's fingerprint is unknown (no .pub beside it)"


def trust_edit(target: Target, add: Path | None = None, remove: str | None = None) -> dict[str, Any]:
    """Add a public key to, or remove a fingerprint from, the board's trust policy; the policy afterwards."""
    if add is not None:
        try:
            line = Path(add).expanduser().read_text().strip()
        except OSError as err:
            raise DeployError(f"cannot read public key {add}: {err.strerror}") from err
        if line.startswith("-----BEGIN") or "PRIVATE KEY" in line:
            raise DeployError(f"{add} is a private key; give its .pub (the private key never leaves this machine)")
        reply = board_client.call(target, "trust-add", target.root, line, what="adding the key")
    elif remove is not None:
        reply = board_client.call(target, "trust-remove", target.root, remove, what="removing the key")
    else:
        reply = board_client.call(target, "trust-list", target.root, what="reading the trust policy")
    if not reply["ok"]:
        raise DeployError(f"{target.name}: {reply['error']}; its trust policy is unchanged")
    return reply
