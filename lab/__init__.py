"""The network-namespace lab (test harness and demo). IPVS stand-in is test scaffolding."""
