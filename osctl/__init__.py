"""osctl: the client of osctld. Never imports osctld."""

__version__ = "0.1.0"
