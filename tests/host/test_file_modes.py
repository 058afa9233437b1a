"""What edgerl writes by a rename (through mkstemp/mkdtemp, 0600 and 0700) ends up as any file the user makes: a
bundle, its manifest and a checkpoint are readable by a web server or a service's user, as the umask says."""

from __future__ import annotations

import os

from device.manifest import EnvSpec
from host.checkpoint import save_checkpoint
from host.policies import PolicyConfig


def made_here(folder) -> tuple[int, int]:
    """(file mode, folder mode) that open() and mkdir() give in `folder`."""
    (folder / "probe-file").write_text("")
    (folder / "probe-folder").mkdir()
    return (folder / "probe-file").stat().st_mode & 0o777, (folder / "probe-folder").stat().st_mode & 0o777


def test_an_exported_bundle_and_a_checkpoint_have_the_modes_of_any_file_made_here(bundles, tmp_path):
    file_mode, folder_mode = made_here(tmp_path)
    bundle = bundles["dqn"]  # exported by this run, through mkdtemp and a rename
    assert bundle.stat().st_mode & 0o777 == folder_mode
    for name in os.listdir(bundle):
        assert (bundle / name).stat().st_mode & 0o777 == file_mode, name
    save_checkpoint(tmp_path / "checkpoint.pt", PolicyConfig(), EnvSpec(), {})
    assert (tmp_path / "checkpoint.pt").stat().st_mode & 0o777 == file_mode
