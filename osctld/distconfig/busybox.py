"""busybox: our own template's rcS sets the hostname from /etc/hostname."""

from .base import DistConfig


class BusyboxConfig(DistConfig):
    def passwd_command(self, user: str, password: str) -> tuple[list[str], bytes]:
        # busybox-static has no chpasswd; its passwd reads the new password
        # twice from a stdin that is not a terminal.
        return ["passwd", user], f"{password}\n{password}\n".encode()
