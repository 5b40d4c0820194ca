"""libzfs_core (pyzfs) for the daemon, whatever Python environment it runs in.

Debian ships the binding as ``python3-pyzfs`` in ``/usr/lib/python3/dist-packages``,
built from the same OpenZFS release as the module and ``zfsutils-linux``;
it is not on PyPI in a matching version. The daemon runs from a virtualenv
(``scripts/setup.sh``) that does not see dist-packages, and putting the whole
directory on ``sys.path`` would let Debian's copies of other libraries
shadow or mix with the venv's. So only the package ``libzfs_core`` is loaded
from there, by its path; it is pure Python on cffi in ABI mode
(``dlopen("zfs_core")``), and cffi is one of osctld's own dependencies
(setup.cfg), so nothing compiled for Debian's interpreter is loaded into the
venv's. An environment that has ``libzfs_core`` itself (a system Python with
python3-pyzfs) uses its own.

Importing it opens nothing; the first call opens /dev/zfs.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from osctl.protocol import UNSUPPORTED, OsctlError

DIST_PACKAGES = Path("/usr/lib/python3/dist-packages")
NAME = "libzfs_core"


def load(dist_packages: Path = DIST_PACKAGES) -> ModuleType:
    """The ``libzfs_core`` module: the environment's, else Debian's."""
    if NAME in sys.modules:
        return sys.modules[NAME]
    spec = importlib.util.find_spec(NAME) or \
        importlib.machinery.PathFinder.find_spec(NAME, [str(dist_packages)])
    if spec is None or spec.loader is None:
        raise OsctlError(UNSUPPORTED, "the zfs backend needs libzfs_core: apt install python3-pyzfs "
                                      "(the same OpenZFS release as the module)")
    module = importlib.util.module_from_spec(spec)
    sys.modules[NAME] = module  # its own modules import it by name while it loads
    try:
        spec.loader.exec_module(module)
    except ImportError as e:
        del sys.modules[NAME]
        raise OsctlError(UNSUPPORTED, f"libzfs_core cannot be loaded: {e} (it needs cffi in "
                                      "osctld's environment: scripts/setup.sh)") from None
    except BaseException:
        del sys.modules[NAME]
        raise
    return module
