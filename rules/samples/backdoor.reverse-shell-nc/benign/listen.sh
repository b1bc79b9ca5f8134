#!/bin/sh
# serve a readiness file for the load balancer
while true; do nc -l -p 9000 < /srv/ready; done
