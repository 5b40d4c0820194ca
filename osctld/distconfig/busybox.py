"""busybox: our own template's rcS sets the hostname from /etc/hostname."""

from .base import DistConfig


class BusyboxConfig(DistConfig):
    pass
