"""`make bench`: latency and throughput of the whole bridge on this machine."""
