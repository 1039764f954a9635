"""One module of routes per protocol."""
