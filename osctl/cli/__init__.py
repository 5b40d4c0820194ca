"""The osctl command line: one module per object."""
