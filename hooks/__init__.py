"""Effects on a node: every side effect lvsdr has goes through this package."""
