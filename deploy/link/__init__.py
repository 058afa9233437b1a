"""The connection to a board: SSH (host keys checked, every call bounded), ssh_config, targets (local: too)."""
