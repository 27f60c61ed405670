"""Facts every layer shares: ports, address pools, MTU arithmetic, secret paths, tags, pinned versions,
and the error base classes. Pure Python; imports nothing else of lmrun."""
