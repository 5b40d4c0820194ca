"""Plain directories: works on any filesystem; a clone is a full copy (or reflink)."""

from .base import Backend


class DirBackend(Backend):
    name = "dir"
