"""osctld: the container hypervisor daemon of a hosting node."""

__version__ = "0.1.0"
