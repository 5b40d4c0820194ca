"""The node as a member of a cluster on etcd (``cluster:`` in osctld.yml).

Nothing here is imported by a node without that section: it runs alone as
it always did, and never imports etcd3gw. The layers, each using the one
before:

- ``etcd.py``: the etcd client (etcd3gw over the /v3/ JSON gateway, called
  in threads), failing over between the configured endpoints;
- ``store.py``: the cluster's records under ``/osctld/`` (nodes, instances
  changed only by compare-and-swap, server groups, send keys, tasks and
  their results);
- ``membership.py``: this node's key under a lease, kept alive;
- ``leader.py``: etcd's election, and the leader's loop with its hooks;
- ``tasks.py``: the task queue: a registry of handlers (``@task``), the
  runner of this node's tasks, and ``call`` to run one on another node;
- ``sync.py``: this node's instances written to their records, and the
  members' send keys authorized here;
- ``agent.py``: all of it started and stopped with the daemon;
- ``decide.py``: the decisions (placement, evacuation and restore plans,
  HA recovery), pure: no etcd, no clock;
- ``actions.py``: what the mechanism below has the node's commands do
  (start, stop, move, replicate, recover), as an object the commands
  layer hands in: nothing here imports a command;
- ``evacuate.py``: maintenance done: the leader runs an evacuation or
  restore plan's moves, each node does its step;
- ``fencing.py``: a node that lost its lease kills its HA instances;
- ``replication.py``: each node's replica passes to the standbys;
- ``recovery.py``: the leader recovers a lost node's HA instances on
  their standby, which takes their records over.

docs/design-notes.md ("Cluster") says why each is as it is.
"""
