"""What talking to etcd can fail with: here, apart from the client, so
that modules that only catch them (the commands' task handlers) do not
import etcd3gw on a node that runs alone."""


class EtcdUnavailable(Exception):
    """No endpoint answered."""


class EtcdError(Exception):
    """What etcd refused (a malformed request, ``election: no leader``)."""
