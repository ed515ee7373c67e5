"""The command line: ``main`` (the ``cimc`` group) and one module per command or topic."""
