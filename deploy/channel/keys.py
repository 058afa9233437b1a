"""The channel's signing keys: one ed25519 key per TUF role, in a folder kept off the server (files 0600)."""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives.serialization import load_pem_private_key
from securesystemslib.signer import CryptoSigner

from device.manifest import EdgerlError

ROLES = ("root", "targets", "snapshot", "timestamp")


class ChannelError(EdgerlError):
    """A channel operation refused: bad input, or a folder that is not a channel (exit 2)."""


def _key_file(keydir: Path, role: str) -> Path:
    return keydir / f"{role}.pem"


def generate(keydir: Path) -> dict[str, CryptoSigner]:
    """A new key per role, written 0600 into keydir (0700); an existing key is never overwritten."""
    keydir.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(keydir, 0o700)
    taken = [r for r in ROLES if _key_file(keydir, r).exists()]
    if taken:
        raise ChannelError(f"{keydir} already holds keys ({', '.join(taken)}): a channel's keys are made once; "
                           "give another --keys folder")
    signers = {}
    for role in ROLES:
        signer = CryptoSigner.generate_ed25519()
        fd = os.open(_key_file(keydir, role), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(signer.private_bytes)
        signers[role] = signer
    return signers


def load(keydir: Path, role: str) -> CryptoSigner:
    """The role's signer from keydir, or one line saying which key is missing."""
    path = _key_file(keydir, role)
    try:
        private = load_pem_private_key(path.read_bytes(), password=None)
    except OSError as err:
        raise ChannelError(f"the {role} key {path} cannot be read ({err.strerror or err}): give the --keys folder "
                           "`edgerl channel init` wrote") from None
    except ValueError:
        raise ChannelError(f"{path} is not a PEM private key") from None
    return CryptoSigner(private)
