"""The board's allowed_signers, read as OpenSSH reads it, failing closed on anything it cannot read."""

from __future__ import annotations

import subprocess

import pytest

from device.trust import TrustError, board_root, fingerprint, parse_signer, read_policy


@pytest.fixture(scope="module")
def pub(tmp_path_factory):
    key = tmp_path_factory.mktemp("k") / "ann"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "ann@laptop", "-f", str(key)], check=True)
    return key.with_suffix(".pub")


def test_fingerprints_are_openssh_s(pub):
    shown = subprocess.run(["ssh-keygen", "-l", "-f", str(pub)], capture_output=True, text=True).stdout.split()[1]
    assert fingerprint(pub.read_text().split()[1]) == shown


def test_a_policy_line_and_what_is_not_one(pub, tmp_path):
    kind, key = pub.read_text().split()[:2]
    signer = parse_signer(f'ann namespaces="edgerl-bundle" {kind} {key}')
    assert (signer.principals, signer.options, signer.key_type) == ("ann", 'namespaces="edgerl-bundle"', kind)
    for bad in ("ann", f"{kind} {key}", f"ann {kind} not-base64!", f"ann ssh-rsa {key}"):
        with pytest.raises(ValueError):
            parse_signer(bad)
    policy = tmp_path / "allowed_signers"
    assert read_policy(str(policy)) is None  # no policy: unsigned releases accepted
    policy.write_text(f"# ours\n{signer.line()}\n\nsomething else\n")
    with pytest.raises(TrustError, match="unreadable at line 4"):
        read_policy(str(policy))


def test_only_a_bundle_inside_a_board_folder_is_judged_by_that_board(tmp_path):
    bundle = tmp_path / "board" / "releases" / "r1" / "bundle"
    bundle.mkdir(parents=True)
    (tmp_path / "board" / "current").symlink_to("releases/r1")
    assert board_root(bundle) == str(tmp_path / "board")
    assert board_root(tmp_path / "board" / "current" / "bundle") == str(tmp_path / "board")
    assert board_root(tmp_path / "elsewhere" / "bundle") is None
