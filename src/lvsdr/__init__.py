"""lvsdr: LVS direct-routing clusters run by keepalived, from one cluster file."""

__version__ = "0.1.0"
