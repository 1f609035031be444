"""Defaults a fast path reads without importing the model (the model takes
them from here: each is stated once)."""

STATE_DIR = "/run/lvsdr"  # lvsdr's records on each node (and its lock)
NOTIFY_FIFO = "/run/lvsdr/notify.fifo"
LVSDR_PATH = "/usr/local/bin/lvsdr"
CONFIG_PATH = "/etc/lvsdr/cluster.toml"
