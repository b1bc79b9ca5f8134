#!/bin/sh
# official docker:dind style: the daemon listens for its own clients
set -- dockerd --host=unix:///var/run/docker.sock --host=tcp://0.0.0.0:2375 "$@"
exec "$@"
