"""Moving servers between nodes: the SSH trust (keychain, forced command,
receive socket, the verbs another node may call) and the sending side's
channel. Kept light: the forced command ``osctld-receive`` imports from here."""
