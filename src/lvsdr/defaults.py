"""Defaults a fast path reads without importing the model (the model takes
them from here: each is stated once)."""

STATE_DIR = "/run/lvsdr"  # lvsdr's records on each node (and its lock)
NOTIFY_FIFO = "/run/lvsdr/notify.fifo"
LVSDR_PATH = "/usr/bin/lvsdr"  # where the lvsdr Debian package (scripts/lvsdr-deb) puts the command
CONFIG_PATH = "/etc/lvsdr/cluster.toml"
KEEPALIVED_CONF = "/etc/keepalived/keepalived.conf"  # where keepalived reads its config (watch's -o, render --all)
KEEPALIVED_PIDFILE = "/run/keepalived.pid"  # keepalived's own default: where `lvsdr watch` finds it to reload
FIREWALLD_ZONE = "public"  # the zone firewalld's forward-ports go into on a real server
AGENT_INTERVAL = 30.0  # seconds of quiet after which the agent reconciles anyway (heals drift)
MAX_INTERVAL = 86400.0  # the longest interval the agent takes (select() and its timer take no more)
# ECMP clusters ([bgp])
BGP_TABLE = 4242  # the kernel routing table whose routes (one per announced VIP, via lo) BIRD learns and exports
BGP_HOLD_TIME = 9  # s; BIRD's own default is 240, too slow to withdraw a dead director without BFD
BFD_INTERVAL = 100  # ms between BFD packets ...
BFD_MULTIPLIER = 3  # ... and how many lost make a peer down: 300 ms to detect a dead box
# s `lvsdr drain` waits for a director's IPVS connections to end (bgp.drain_timeout), and a backend or service
# removed from the cluster file stays in IPVS at weight 0 while its connections end (cluster.drain_timeout)
DRAIN_TIMEOUT = 60
BIRD_CONF = "/etc/bird/bird.conf"  # Debian's bird2 reads it
BIRD_SOCKET = "/run/bird/bird.ctl"  # birdc's control socket (Debian's bird2)
# connection sync (sync_daemon): a MASTER that comes back waits this long as BACKUP before it takes the
# VIPs back (keepalived's preempt_delay), so that the connections the other director carried meanwhile reach its
# table: IPVS syncs a connection on its state changes and again every 50 packets it receives (sync_threshold 3 50)
SYNC_PREEMPT_DELAY = 60  # s, rendered when the file sets neither preempt_delay nor nopreempt
SYNC_MIN_PREEMPT_DELAY = 10  # s; a shorter preempt_delay with sync_daemon is refused
# DR-path checks (cluster.dr_check): each director sends a TCP SYN to VIP:port at each backend's MAC, the way IPVS
# forwards; a backend whose path fails FALL rounds in a row leaves IPVS (keepalived's FILE_CHECK on a file the agent
# writes) and comes back after RISE good rounds. 0.5 s and 2: a fault is contained within 1.5 s of its start
DR_CHECK_INTERVAL = 0.5  # s between rounds (a reply must come within the round)
DR_CHECK_FALL = 2
DR_CHECK_RISE = 3
GUARD_WINDOW = 10  # s `lvsdr watch` verifies the wire after installing a new keepalived.conf (cluster.guard_window)
