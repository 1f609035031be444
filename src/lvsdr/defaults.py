"""Defaults a fast path reads without importing the model (the model takes
them from here: each is stated once)."""

STATE_DIR = "/run/lvsdr"  # lvsdr's records on each node (and its lock)
NOTIFY_FIFO = "/run/lvsdr/notify.fifo"
LVSDR_PATH = "/usr/local/bin/lvsdr"
CONFIG_PATH = "/etc/lvsdr/cluster.toml"
KEEPALIVED_PIDFILE = "/run/keepalived.pid"  # keepalived's own default: where `lvsdr watch` finds it to reload
FIREWALLD_ZONE = "public"  # the zone firewalld's forward-ports go into on a real server
AGENT_INTERVAL = 30.0  # seconds of quiet after which the agent reconciles anyway (heals drift)
MAX_INTERVAL = 86400.0  # the longest interval the agent takes (select() and its timer take no more)
