"""Mechanism below the commands: LXC, cgroups, features, QEMU."""
