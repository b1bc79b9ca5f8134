#!/bin/bash
# database entrypoint: tuning, no rivals
ulimit -n 65535
sysctl -w vm.max_map_count=262144 || true
exec /usr/share/elasticsearch/bin/elasticsearch "$@"
