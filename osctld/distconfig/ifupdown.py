"""/etc/network/interfaces, shared by ifupdown (Debian) and ifupdown-ng
(Alpine): the user's interfaces.head and interfaces.tail are copied in at the
top and the bottom, and interfaces.d/ is sourced, as vpsAdminOS does."""

from __future__ import annotations

from abc import abstractmethod

from .base import DistConfig, generated_header
from .netconfig import IfaceConfig

INTERFACES = "etc/network/interfaces"
OWN = """Your own configuration goes in /etc/network/interfaces.head and
/etc/network/interfaces.tail (copied in at the top and the bottom of this
file) or in /etc/network/interfaces.d/ (sourced)."""


class IfupdownConfig(DistConfig):
    # How the dialect sources interfaces.d/ (ifupdown-ng takes no glob).
    include = "source /etc/network/interfaces.d/*"

    def set_network(self, ifaces: list[IfaceConfig]) -> None:
        parts = [generated_header("#", "/" + INTERFACES, OWN)]
        parts += self._user_part("head")
        parts.append("\nauto lo\niface lo inet loopback\n")
        parts += ["\n" + self.stanza(i) for i in ifaces]
        parts.append(f"\n{self.include}\n")
        parts += self._user_part("tail")
        self.fs.write(INTERFACES, "".join(parts))

    def _user_part(self, which: str) -> list[str]:
        text = self.fs.read(f"{INTERFACES}.{which}")
        if not text or not text.strip():
            return []
        return [f"\n# /{INTERFACES}.{which}\n" + text.rstrip("\n") + "\n"]

    @abstractmethod
    def stanza(self, iface: IfaceConfig) -> str:
        """The interface's lines in this dialect, ending with a newline."""
