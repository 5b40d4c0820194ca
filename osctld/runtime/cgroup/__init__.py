"""cgroups: the node's hierarchies (layout.py) and the tree of pools, groups,
containers and VMs osctld keeps in them (tree.py)."""
