"""Training edgerl's own Pong policy: PQN on ale-py's vector env, its logs and learning curve."""
