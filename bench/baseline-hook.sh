#!/bin/sh
# The hand-written notify hook lvsdr's is measured against (bench/notify_latency.py):
# what an operator writes for director node1 of examples/pair.toml, a director
# that is also a real server (nftables method). keepalived calls it as
#   baseline-hook.sh INSTANCE NAME STATE PRIORITY
# BACKUP/FAULT: the VIP on lo and ARP suppression, no fwmark rule (no loop).
# MASTER: the fwmark rule, the ARP rules lifted, one gratuitous ARP.
VIP=192.0.2.120
ME=192.0.2.21
MARK=0x4c560001
case "$3" in
MASTER)
    nft -f - <<NFT
table inet lvsdr_fwmark
delete table inet lvsdr_fwmark
table inet lvsdr_fwmark {
    chain prerouting {
        type filter hook prerouting priority mangle; policy accept;
        ip daddr $VIP tcp dport 80 meta mark set $MARK
    }
}
table arp lvsdr
delete table arp lvsdr
NFT
    arping -U -c 1 -w 0 -I eth0 "$VIP" >/dev/null 2>&1 || true
    ;;
BACKUP|FAULT)
    ip addr replace "$VIP/32" dev lo label lo:lvsdr
    nft -f - <<NFT
table arp lvsdr
delete table arp lvsdr
table arp lvsdr {
    chain input {
        type filter hook input priority filter; policy accept;
        arp daddr ip $VIP drop
    }
    chain output {
        type filter hook output priority filter; policy accept;
        arp saddr ip $VIP arp saddr ip set $ME
    }
}
table inet lvsdr_fwmark
delete table inet lvsdr_fwmark
NFT
    ;;
esac
