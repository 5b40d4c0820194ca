"""The cluster: nodes acting together on etcd (docs/design-notes.md, Cluster)."""
