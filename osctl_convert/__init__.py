"""Moving containers off OpenVZ Legacy (vzctl, OpenVZ 6) nodes.

Standard library only: ``osctl-convert`` runs on the OpenVZ node, where
Python 3 is all there is, and osctld's ``ct import-vz`` uses the same
parsing, mapping and rootfs fix-ups.
"""
