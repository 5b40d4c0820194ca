"""What every distribution shares: hostname, /etc/hosts, resolv.conf."""

from __future__ import annotations

from pathlib import Path

from .rootfs import RootFS

HOSTS_MARK = "# osctld: hostname"


class DistConfig:
    def __init__(self, rootfs: Path):
        self.fs = RootFS(rootfs)

    def set_hostname(self, hostname: str) -> None:
        self.fs.write("etc/hostname", f"{hostname}\n")
        self._hosts(hostname)

    def _hosts(self, hostname: str) -> None:
        old = self.fs.read("etc/hosts") or "127.0.0.1\tlocalhost\n::1\t\tlocalhost\n"
        kept = [ln for ln in old.splitlines() if not ln.endswith(HOSTS_MARK)]
        short = hostname.split(".")[0]
        names = hostname if short == hostname else f"{hostname} {short}"
        kept.append(f"127.0.1.1\t{names}\t{HOSTS_MARK}")
        self.fs.write("etc/hosts", "\n".join(kept) + "\n")

    def set_dns(self, resolvers: list[str]) -> None:
        body = "".join(f"nameserver {r}\n" for r in resolvers)
        self.fs.write("etc/resolv.conf", "# written by osctld\n" + body)

    def passwd_command(self, user: str, password: str) -> tuple[list[str], bytes]:
        """What sets a password inside the running container, and its stdin."""
        return ["chpasswd"], f"{user}:{password}\n".encode()
