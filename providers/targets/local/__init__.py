"""The local target: services as detached processes behind a blue/green TCP proxy on this machine."""
