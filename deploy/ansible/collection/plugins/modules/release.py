"""The documentation of edgerl.board.release; its action plugin does the work (on the controller)."""

DOCUMENTATION = r"""
module: release
short_description: Make an edgerl bundle the board's current release
description:
  - >-
    Runs edgerl's own deploy step for the host (what C(edgerl deploy) runs) - the release's files put in place over
    edgerl's checked SSH link and checked against their sha256 on the board, the venv ensured, the board's
    self-test (and its trust policy), the atomic switch, the oldest releases pruned to I(keep).
  - Idempotent, a board already running this release, whole, is not touched (C(changed=false)).
  - Check mode reads the board's status and says whether it would switch.
  - The host's connection variables (ansible_host, ansible_port, ansible_user, ansible_ssh_private_key_file,
    edgerl_board_dir) say where the board is; edgerl connects itself and checks the host key in I(known_hosts).
extends_documentation_fragment: [edgerl.board.link, edgerl.board.link.release]
author: edgerl developers
"""

EXAMPLES = r"""
- edgerl.board.release:
    bundle: build/bundle
"""

RETURN = r"""
release: {description: The release the board runs now., type: str, returned: success}
previous: {description: The release before it., type: str, returned: success}
uploaded_bytes: {description: Bytes sent (files the board held are not)., type: int, returned: changed}
"""
