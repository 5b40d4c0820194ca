"""NixOS: the system is built from /etc/nixos, so osctld writes Nix modules.

/etc/nixos/osctld/{hostname,dns,network}.nix, gathered by
/etc/nixos/osctld/default.nix, which configuration.nix imports (osctld adds
``./osctld`` to its imports once and leaves the rest of the user's file as it
is). Like any NixOS setting they take effect with the next
``nixos-rebuild``. /etc/hostname, /etc/hosts and resolv.conf
are NixOS's own (built from these options), so they are not written.
"""

from __future__ import annotations

import ipaddress
import json
import re

from .base import DistConfig, generated_header
from .netconfig import IfaceConfig, Route

DIR = "etc/nixos/osctld"
CONFIGURATION = "etc/nixos/configuration.nix"
PARTS = ("hostname", "dns", "network")
IMPORT = "./osctld"
OWN = "Your own settings go in /etc/nixos/configuration.nix, which imports this."
IMPORTED = re.compile(r"(^|[\s\[])\./osctld(/default\.nix)?([\s\];]|$)")
IMPORTS = re.compile(r"\bimports\s*=\s*\[")
# Comments, the module's argument pattern ({ config, pkgs, ... }: or args:),
# if any, then the opening brace of its attribute set.
_GAP = r"(?:\s|#[^\n]*\n)*"
MODULE_ARGS = re.compile(_GAP + r"(?:\{[^{}]*\}\s*(?:@\s*\w+\s*)?:|\w+\s*:)")
MODULE_OPEN = re.compile(_GAP + r"\{(?=\s)")
MINIMAL = "{ ... }:\n{\n  imports = [ ./osctld ];\n}\n"


def _str(s: str) -> str:
    """A Nix string literal: JSON's escaping, with ${ escaped as well."""
    return json.dumps(s).replace("${", "\\${")


def _address(a: ipaddress.IPv4Interface | ipaddress.IPv6Interface) -> str:
    return f"{{ address = {_str(str(a.ip))}; prefixLength = {a.network.prefixlen}; }}"


def _route(iface: IfaceConfig, r: Route) -> str:
    words = [f"address = {_str(str(r.prefix.network_address))};", f"prefixLength = {r.prefix.prefixlen};"]
    if r.via:
        words.append(f"via = {_str(str(r.via))};")
    src = iface.src(r.prefix.version)
    # NixOS adds the routes right after the addresses, while DAD may still
    # hold an IPv6 source tentative and the kernel would refuse the route:
    # the IPv6 source is left to the kernel's choice.
    if r.is_default and src and r.prefix.version == 4:
        words.append(f"options.src = {_str(str(src))};")
    return "{ " + " ".join(words) + " }"


def _list(items: list[str], indent: str) -> str:
    if not items:
        return "[ ]"
    return "[\n" + "".join(f"{indent}  {i}\n" for i in items) + f"{indent}]"


def _interface(iface: IfaceConfig) -> str:
    ind = "    "
    lines = [f"  networking.interfaces.{_str(iface.name)} = {{", f"{ind}useDHCP = {str(iface.dhcp).lower()};"]
    for v in (4, 6):
        lines.append(f"{ind}ipv{v}.addresses = {_list([_address(a) for a in iface.addresses_of(v)], ind)};")
        lines.append(f"{ind}ipv{v}.routes = {_list([_route(iface, r) for r in iface.routes_of(v)], ind)};")
    return "\n".join(lines) + "\n  };\n"


class NixOSConfig(DistConfig):
    def set_hostname(self, hostname: str) -> None:
        host, _, domain = hostname.partition(".")
        body = f"  networking.hostName = lib.mkDefault {_str(host)};\n"
        if domain:
            body += f"  networking.domain = lib.mkDefault {_str(domain)};\n"
        self._part("hostname", body)

    def set_dns(self, resolvers: list[str]) -> None:
        self._part("dns", f"  networking.nameservers = {_list([_str(r) for r in resolvers], '  ')};\n")

    def set_network(self, ifaces: list[IfaceConfig]) -> None:
        self._part("network", "".join(_interface(i) for i in ifaces))

    def _part(self, name: str, body: str) -> None:
        path = f"{DIR}/{name}.nix"
        self.fs.write(path, generated_header("#", "/" + path, OWN) + "{ lib, ... }:\n{\n" + body + "}\n")
        present = [p for p in PARTS if self.fs.exists(f"{DIR}/{p}.nix")]
        self.fs.write(f"{DIR}/default.nix", generated_header("#", f"/{DIR}/default.nix", OWN)
                      + "{\n  imports = " + _list([f"./{p}.nix" for p in present], "  ") + ";\n}\n")
        self._import()

    def _import(self) -> None:
        """Add ``./osctld`` to configuration.nix's imports, once. A file of a
        shape not recognised here (a ``let`` before its attribute set, say) is
        left as it is: its author imports ./osctld where they like."""
        text = self.fs.read(CONFIGURATION)
        if text is None:
            self.fs.write(CONFIGURATION, MINIMAL)
            return
        if IMPORTED.search(text):
            return
        if m := IMPORTS.search(text):
            add = f" {IMPORT}"
        elif m := MODULE_OPEN.match(text, args.end() if (args := MODULE_ARGS.match(text)) else 0):
            add = f"\n  imports = [ {IMPORT} ];"
        else:
            return
        self.fs.write(CONFIGURATION, text[:m.end()] + add + text[m.end():])
