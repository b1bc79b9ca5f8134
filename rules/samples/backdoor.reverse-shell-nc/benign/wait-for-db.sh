#!/bin/sh
# busybox/openbsd nc as a port probe in an entrypoint
until nc -z -w 2 db 5432; do sleep 1; done
exec "$@"
