"""What every distribution shares: hostname, /etc/hosts, resolv.conf."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

from .netconfig import IfaceConfig
from .rootfs import RootFS

HOSTS_MARK = "# osctld: hostname"
RESOLVED_STUB = "/run/systemd/resolve/"
RESOLVED_DROPIN = "etc/systemd/resolved.conf.d/osctld.conf"


def generated_header(comment: str, keep: str, own: str) -> str:
    """The note atop every generated file: who writes it, how to keep it as
    it is, and where the user's own configuration goes instead."""
    lines = [
        "This file is written by osctld and regenerated whenever the container's",
        "configuration changes: edits made here are lost.",
        *own.splitlines(),
        f"To stop osctld from writing it: chmod u-w {keep}",
    ]
    return "".join(f"{comment} {ln}\n" if ln else f"{comment}\n" for ln in lines)


class DistConfig(ABC):
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
        """Where /etc/resolv.conf is systemd-resolved's link, replacing it would
        cut resolved out: the resolvers go to a resolved drop-in instead."""
        if (self.fs.readlink("etc/resolv.conf") or "").startswith(
                (RESOLVED_STUB, "../run/systemd/resolve/")):
            self.fs.write(RESOLVED_DROPIN, "# written by osctld\n[Resolve]\nDNS=" + " ".join(resolvers) + "\n")
            return
        body = "".join(f"nameserver {r}\n" for r in resolvers)
        self.fs.write("etc/resolv.conf", "# written by osctld\n" + body)

    def passwd_command(self, user: str, password: str) -> tuple[list[str], bytes]:
        """What sets a password inside the running container, and its stdin."""
        return ["chpasswd"], f"{user}:{password}\n".encode()

    def write_set(self, directory: str, prefix: str, suffix: str, files: dict[str, str],
                  mode: int = 0o644) -> None:
        """Write ``<prefix><key><suffix>`` for each of ``files`` in ``directory``
        and remove the files of that pattern left from interfaces now gone."""
        for name in self.fs.listdir(directory):
            key = name[len(prefix):-len(suffix)]
            if name.startswith(prefix) and name.endswith(suffix) and key not in files:
                self.fs.remove(f"{directory}/{name}")
        for key, text in files.items():
            self.fs.write(f"{directory}/{prefix}{key}{suffix}", text, mode)

    @abstractmethod
    def set_network(self, ifaces: list[IfaceConfig]) -> None:
        """Write the interfaces in the distribution's own format, so that its
        init brings them up at boot; each distribution's module says how."""
