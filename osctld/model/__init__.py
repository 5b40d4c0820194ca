"""Objects the daemon manages, as validated dataclasses. No I/O here."""
