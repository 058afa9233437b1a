"""Many boards: the inventory (edgerl's or Ansible's), deploys in parallel and in waves, the fleet's table."""
