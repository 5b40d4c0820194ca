"""What the destination lets rsync's server end do: only what osctld's own
client asks for, into the transfer's tree."""

from __future__ import annotations

from pathlib import Path

import pytest

from osctl.protocol import OsctlError
from osctld.transfer.streams import rsync_server_argv

T = "ab" * 20


def test_the_server_end_runs_what_osctlds_client_sends():
    argv = ["rsync", "--server", "-lHogDtpAXrxSe.iLsfxCIvu", "--delete", "--numeric-ids", ".", T]
    assert rsync_server_argv(argv, Path("/p/ct/c1/recv/rootfs")) == [
        "rsync", "--server", "-lHogDtpAXrxSe.iLsfxCIvu", "--delete", "--numeric-ids", ".",
        "/p/ct/c1/recv/rootfs/"]


@pytest.mark.parametrize("argv", [
    ["rsync", "--server", "--sender", "-lHogDtpAXrxSe.iLsfxCIvu", ".", T],  # reading from us
    ["rsync", "--server", "--log-file=/etc/x", "-a", ".", T],
    ["rsync", "--server", "-lHogDtpAXrxSe.iLsfxCIvu", "--rsync-path=sh", ".", T],
    ["sh", "-c", "id", ".", T], ["rsync", "--server", "-a", "/etc", T], ["rsync", "--server"],
])
def test_anything_else_is_refused(argv):
    with pytest.raises(OsctlError) as e:
        rsync_server_argv(argv, Path("/x"))
    assert e.value.code == "invalid"
