"""The documentation of edgerl.board.facts; its action plugin does the work (on the controller)."""

DOCUMENTATION = r"""
module: facts
short_description: What edgerl status shows for a board, as the fact edgerl
description:
  - The board's current and previous releases, its releases and venvs, whether a deploy holds its lock, a damaged
    current release's files, the model (int8 or fp32) its self-test chose, and its pull channel.
  - Changes nothing; runs in check mode too.
extends_documentation_fragment: [edgerl.board.link]
author: edgerl developers
"""

EXAMPLES = r"""
- edgerl.board.facts:
- ansible.builtin.debug:
    var: edgerl.current
"""

RETURN = r"""
ansible_facts: {description: "C(edgerl): the board's status.", type: dict, returned: always}
"""
