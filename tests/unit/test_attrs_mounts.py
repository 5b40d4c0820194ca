"""Attributes and bind mount paths: what is taken, what is refused."""

import pytest

from osctl.cli.common import by_attrs
from osctl.protocol import OsctlError
from osctld.model.attrs import MAX_ATTRS, loaded, updated
from osctld.model.container import Container
from osctld.model.mount import Mount, check_paths


def test_attrs_set_unset_and_bounds():
    a = updated({}, "org.example:order", "1234")
    assert a == {"org.example:order": "1234"}
    assert updated(a, "org.example:order", None) == {}
    assert updated({}, "org.example:gone", None) == {}
    for key in ("order", ":x", "Org:x", "org.example:", "a:b c", "x" * 64 + ":k"):
        with pytest.raises(OsctlError):
            updated({}, key, "v")
    for value in ("x" * 1025, "a\nb", "\x1b[2J"):
        with pytest.raises(OsctlError):
            updated({}, "org.example:k", value)
    full = {f"v:k{i}": "x" for i in range(MAX_ATTRS)}
    with pytest.raises(OsctlError):
        updated(full, "v:one-more", "x")
    assert updated(full, "v:k0", "y")["v:k0"] == "y"  # a change is no new one


def test_attrs_loaded_drop_bad_ones_and_persist():
    assert loaded({"ok:k": "v", "bad": "v", "ok:n": 3}, "here") == {"ok:k": "v"}
    assert loaded(None, "here") == {} and loaded(["x"], "here") == {}
    ct = Container(id="c1", pool="p", user="u", distribution="busybox", version="1",
                   attrs={"org.example:order": "1"})
    again = Container.from_dict(ct.to_dict(), "p")
    assert again.attrs == {"org.example:order": "1"} and again.public()["attrs"] == again.attrs


def test_ls_filter_by_attrs():
    rows = [{"id": "a", "attrs": {"o:k": "1"}}, {"id": "b", "attrs": {"o:k": "2"}}, {"id": "c"}]
    assert [r["id"] for r in by_attrs(rows, ["o:k=1"])] == ["a"]
    assert [r["id"] for r in by_attrs(rows, ["o:k"])] == ["a", "b"]
    assert [r["id"] for r in by_attrs(rows, [])] == ["a", "b", "c"]


def test_mount_paths():
    assert check_paths("/srv/data/", "/mnt//data/") == ("/srv/data", "/mnt/data")
    for src, dst in (("rel", "/mnt"), ("/srv", "rel"), ("/srv", "/"), ("/srv", "/proc"),
                     ("/srv", "/sys/kernel"), ("/srv", "/dev/x"), ("/srv", "/mnt/../.."),
                     ("/a b", "/mnt"), ("/srv", "/mnt\\x"), ("/srv", "/" + "x" * 300)):
        with pytest.raises(OsctlError):
            check_paths(src, dst)
    assert check_paths("/srv", "/development") == ("/srv", "/development")
    m = Mount("/srv", "/mnt", ro=True, idmapped=True)
    ct = Container(id="c1", pool="p", user="u", distribution="busybox", version="1", mounts=[m])
    assert Container.from_dict(ct.to_dict(), "p").mounts == [m]


def test_attrs_on_vm_user_group_pool_persist():
    from osctld.model.group import Group
    from osctld.model.idmap import MapEntry
    from osctld.model.pool import Pool
    from osctld.model.user import User
    from osctld.model.vm import VM

    attrs = {"org.example:order": "7"}
    vm = VM(id="v1", pool="p", user="u", template="tinyvm", version="1", cores=1,
            memory=1 << 30, disk=1 << 30, attrs=attrs)
    assert VM.from_dict(vm.to_dict(), "p").attrs == attrs and vm.public()["attrs"] == attrs
    m = [MapEntry.parse("0:100000:65536")]
    u = User(name="u", pool="p", uid_map=m, gid_map=m, attrs=attrs)
    assert User.from_dict(u.to_dict(), "p").attrs == attrs and u.public()["attrs"] == attrs
    g = Group(path="/prod", pool="p", attrs=attrs)
    assert Group.from_dict(g.to_dict(), "p").attrs == attrs
    pool = Pool(name="p", backend="dir", path="/srv/p", attrs=attrs)
    assert pool.to_dict()["attrs"] == attrs
