"""What runs on the board: stdlib only, Python 3.9+, shipped into `.board/<digest>/` with device's contract files.

Each file is also a script there (`python3 .board/<digest>/side.py OP ARG...`), its siblings imported as
top-level modules; on the host they are this package (`board_client` ships them and calls their ops).
"""
