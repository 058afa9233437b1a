"""The documentation of edgerl.board.data; its action plugin does the work (on the controller)."""

DOCUMENTATION = r"""
module: data
short_description: List a board's recordings, or pull them to the controller (and prune what arrived)
description:
  - Without I(out), lists the recordings under the board's data/ folder (serve/play --record, edgerl run --record).
  - >-
    With I(out), runs edgerl's own pull (what C(edgerl data pull --on) runs) into I(out)/<host>/<recording>/, shard
    by shard, each checked against its sha256 (edgerl's checked SSH link, not ansible.builtin.fetch, which checks
    a file's checksum but knows nothing of a recording's index); a rerun fetches only what is missing
    (C(changed=false) when nothing was); I(prune) deletes on the board only the shards that arrived intact.
  - Check mode lists.
options:
  out: {description: The controller's folder for the recordings; without it the task lists them., type: path}
  prune: {description: Delete on the board the shards that arrived intact., type: bool, default: false}
extends_documentation_fragment: [edgerl.board.link]
author: edgerl developers
"""

EXAMPLES = r"""
- edgerl.board.data:
    out: data/
    prune: true
"""

RETURN = r"""
recordings: {description: Each recording's shards and decisions on the board., type: dict, returned: always}
fetched: {description: Shards brought here this run., type: int, returned: when out is given}
"""
