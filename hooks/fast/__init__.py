"""notify's fast path and what it calls on every failover: standard library
only, nothing heavy imported at module level (tests/test_replay.py imports
every module of this folder and checks). The node is changed here only
through ``gateway.nft_transaction``."""
