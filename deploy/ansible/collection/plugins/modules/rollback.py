"""The documentation of edgerl.board.rollback; its action plugin does the work (on the controller)."""

DOCUMENTATION = r"""
module: rollback
short_description: Put the board back on its previous edgerl release
description:
  - Runs edgerl's own rollback step (what C(edgerl rollback) runs), under the board's deploy lock; refused when the
    previous release is damaged, never passed its self-test, or is refused by the board's trust policy.
  - Check mode says what it would roll back to.
extends_documentation_fragment: [edgerl.board.link]
author: edgerl developers
"""

EXAMPLES = r"""
- edgerl.board.rollback:
"""

RETURN = r"""
current: {description: The release the board runs after the rollback., type: str, returned: success}
"""
