"""Files inside a tenant's rootfs: no path, symlink or '..' leads out of it."""

from __future__ import annotations

import os

import pytest

from osctld.distconfig import for_distribution
from osctld.distconfig.base import HOSTS_MARK
from osctld.distconfig.rootfs import RootFS
from tests.conftest import require


@pytest.fixture
def layout(tmp_path):
    """A rootfs whose tenant planted symlinks pointing out, next to a host 'etc'."""
    root = tmp_path / "rootfs"
    host = tmp_path / "host"
    (host / "etc").mkdir(parents=True)
    (host / "etc" / "hostname").write_text("the host\n")
    (host / "etc" / "shadow").write_text("root:secret\n")
    (root / "etc").mkdir(parents=True)
    (root / "inner" / "etc").mkdir(parents=True)
    return root, host


def host_untouched(host):
    assert (host / "etc" / "hostname").read_text() == "the host\n"
    assert (host / "etc" / "shadow").read_text() == "root:secret\n"
    assert sorted(os.listdir(host / "etc")) == ["hostname", "shadow"]


def test_plain_write_and_read(layout):
    root, _ = layout
    fs = RootFS(root)
    assert fs.write("etc/hostname", "c1\n")
    assert fs.read("etc/hostname") == "c1\n" and fs.read("/etc/hostname") == "c1\n"
    assert (root / "etc" / "hostname").stat().st_mode & 0o777 == 0o644
    assert fs.read("etc/missing") is None and not fs.exists("etc/missing")
    fs.write("new/deep/dir/file", "x")
    assert (root / "new" / "deep" / "dir" / "file").read_text() == "x"
    assert not [n for n in os.listdir(root / "etc") if n.startswith(".")]


def test_absolute_symlinked_directory_resolves_inside(layout):
    root, host = layout
    os.rmdir(root / "etc")
    os.symlink(str(host / "etc"), root / "etc")  # what the tenant sees as /<host>/etc
    (root / str(host / "etc").lstrip("/")).mkdir(parents=True)
    RootFS(root).write("etc/hostname", "c1\n")
    host_untouched(host)
    assert (root / str(host / "etc").lstrip("/") / "hostname").read_text() == "c1\n"


def test_dotdot_symlinked_directory_resolves_inside(layout):
    root, host = layout
    os.rmdir(root / "etc")
    os.symlink("../../../../../../../../host/etc", root / "etc")
    (root / "host" / "etc").mkdir(parents=True)
    RootFS(root).write("etc/hostname", "c1\n")
    host_untouched(host)
    assert (root / "host" / "etc" / "hostname").read_text() == "c1\n"


def test_dotdot_in_the_path_stays_inside(layout):
    root, host = layout
    RootFS(root).write("../host/etc/hostname", "c1\n")
    host_untouched(host)
    assert (root / "host" / "etc" / "hostname").read_text() == "c1\n"


def test_symlinked_file_is_replaced_not_followed(layout):
    root, host = layout
    os.symlink(str(host / "etc" / "shadow"), root / "etc" / "shadow")
    os.symlink("../../host/etc/hostname", root / "etc" / "hostname")
    fs = RootFS(root)
    # Reading follows the link, but inside the rootfs: there is nothing there.
    assert fs.read("etc/shadow") is None
    fs.write("etc/shadow", "root:*:\n", 0o600)
    fs.write("etc/hostname", "c1\n")
    host_untouched(host)
    assert not (root / "etc" / "shadow").is_symlink()
    assert (root / "etc" / "shadow").read_text() == "root:*:\n"
    assert (root / "etc" / "hostname").read_text() == "c1\n"


def test_reads_through_symlinks_stay_inside(layout):
    root, host = layout
    (root / "inner" / "etc" / "hostname").write_text("inside\n")
    os.symlink("/inner/etc/hostname", root / "etc" / "abs")
    os.symlink("../../../../inner/etc/hostname", root / "etc" / "rel")
    os.symlink(str(host / "etc" / "shadow"), root / "etc" / "out")
    fs = RootFS(root)
    assert fs.read("etc/abs") == "inside\n"
    assert fs.read("etc/rel") == "inside\n"
    assert fs.read("etc/out") is None


def test_a_dangling_directory_link_is_made_inside(layout):
    root, host = layout
    os.rmdir(root / "etc")
    os.symlink(str(host / "etc"), root / "etc")  # nothing at <root>/<host>/etc
    RootFS(root).write("etc/hostname", "c1\n")
    host_untouched(host)
    assert (root / str(host / "etc").lstrip("/") / "hostname").read_text() == "c1\n"


def test_proc_magic_links_lead_nowhere(layout):
    root, _ = layout
    os.symlink("/proc/self/root/etc", root / "magic")
    assert RootFS(root).read("magic/hostname") is None  # /proc of the rootfs, not the host's


def test_read_only_file_is_left_alone(layout):
    root, _ = layout
    f = root / "etc" / "resolv.conf"
    f.write_text("nameserver 192.0.2.1\n")
    f.chmod(0o444)
    assert RootFS(root).write("etc/resolv.conf", "nameserver 198.51.100.1\n") is False
    assert f.read_text() == "nameserver 192.0.2.1\n"


def test_new_files_and_dirs_take_the_owner_of_their_directory(layout):
    require("chown to another owner needs root" if os.geteuid() != 0 else None)
    root, _ = layout
    os.chown(root, 100000, 100000)
    os.chown(root / "etc", 100000, 100000)
    fs = RootFS(root)
    fs.write("etc/hostname", "c1\n")
    fs.write("var/lib/x", "y")
    for p in (root / "etc" / "hostname", root / "var", root / "var" / "lib", root / "var" / "lib" / "x"):
        st = os.lstat(p)
        assert (st.st_uid, st.st_gid) == (100000, 100000), p


def test_distconfig_hostname_and_dns(layout):
    root, host = layout
    (root / "etc" / "hosts").write_text("127.0.0.1\tlocalhost\n")
    dist = for_distribution("debian")(root)
    dist.set_hostname("web1.example.org")
    dist.set_hostname("web2.example.org")
    assert (root / "etc" / "hostname").read_text() == "web2.example.org\n"
    hosts = (root / "etc" / "hosts").read_text().splitlines()
    assert hosts == ["127.0.0.1\tlocalhost", f"127.0.1.1\tweb2.example.org web2\t{HOSTS_MARK}"]
    dist.set_dns(["192.0.2.53", "2001:db8::53"])
    assert (root / "etc" / "resolv.conf").read_text().splitlines()[1:] == [
        "nameserver 192.0.2.53", "nameserver 2001:db8::53"]
    host_untouched(host)
