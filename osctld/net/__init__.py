"""Container networking: routed and bridged veths, interconnect allocation,
address conflicts, traffic shaping. Host-side work is netlink (pyroute2) in
the daemon's own network namespace; work inside a container runs in a
helper thread that has entered the container's network namespace.
"""
