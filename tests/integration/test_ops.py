"""What hosting operators do besides: attributes, runscript, cp, bind mounts, healthcheck."""

from __future__ import annotations

import yaml


def test_attrs_on_every_object(node):
    node.osctl("user", "new", "u")
    node.osctl("ct", "new", "a1", "--user", "u")
    node.osctl("ct", "new", "a2", "--user", "u")
    node.osctl("ct", "set", "attr", "a1", "org.example:order", "1234")
    p = node.osctl("ct", "set", "attr", "a2", "org.example:order", "99")
    assert "attrs.org.example:order 99" in p.stdout
    assert node.osctl_json("ct", "show", "a1")["attrs"] == {"org.example:order": "1234"}
    ids = [c["id"] for c in node.osctl_json("ct", "ls", "--attr", "org.example:order=1234")]
    assert ids == ["a1"]
    assert len(node.osctl_json("ct", "ls", "--attr", "org.example:order")) == 2
    node.osctl("ct", "unset", "attr", "a2", "org.example:order")
    assert node.osctl_json("ct", "show", "a2")["attrs"] == {}
    for obj, ref in (("user", "u"), ("pool", "default"), ("group", "/default")):
        node.osctl(obj, "set", "attr", ref, "org.example:customer", "42")
        shown = node.osctl_json(obj, "show", ref)
        assert shown["attrs"] == {"org.example:customer": "42"}, obj
        assert len(node.osctl_json(obj, "ls", "--attr", "org.example:customer=42")) == 1, obj
    node.osctl("group", "unset", "attr", "/default", "org.example:customer")
    assert node.osctl_json("group", "show", "/default")["attrs"] == {}
    # Bad names and values are refused and change nothing.
    for key, value in (("order", "1"), ("org.example:", "1"), ("Org:x", "1"),
                       ("org.example:k", "x" * 1025), ("org.example:k", "a\nb")):
        p = node.osctl("ct", "set", "attr", "a1", key, value, check=False)
        assert p.returncode == 2, (key, p.stderr)
    assert node.osctl_json("ct", "show", "a1")["attrs"] == {"org.example:order": "1234"}
    # Persisted: a restarted daemon shows them, and the pool's config holds them.
    node.restart()
    assert node.osctl_json("ct", "show", "a1")["attrs"] == {"org.example:order": "1234"}
    assert node.osctl_json("user", "show", "u")["attrs"] == {"org.example:customer": "42"}
    pool = yaml.safe_load((node.state_dir / "pools/default/conf/pool.yml").read_text())
    assert pool["attrs"] == {"org.example:customer": "42"}
