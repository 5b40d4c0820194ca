"""Debian and its family: hostname and hosts as the base writes them."""

from .base import DistConfig


class DebianConfig(DistConfig):
    pass
