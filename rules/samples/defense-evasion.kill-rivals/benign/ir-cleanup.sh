#!/bin/bash
# Incident response: remove Kinsing / kdevtmpfsi from a compromised host. Removes only; fetches nothing.
pkill -9 -f kdevtmpfsi
pkill -9 -f kinsing
ps aux | grep -v grep | grep kdevtmpfsi | awk '{print $2}' | xargs -r kill -9
rm -f /tmp/kdevtmpfsi /tmp/kinsing /var/tmp/kinsing /dev/shm/kdevtmpfsi
chattr -ia /etc/ld.so.preload 2>/dev/null; rm -f /etc/ld.so.preload
crontab -l | grep -v -E 'd\.sh|kinsing' | crontab -
docker ps | grep kinsing | awk '{print $1}' | xargs -r docker rm -f
echo "127.0.0.1 pool.minexmr.com" >> /etc/hosts
systemctl stop bot.service; systemctl disable bot.service; rm -f /lib/systemd/system/bot.service
touch /tmp/kdevtmpfsi && chmod 000 /tmp/kdevtmpfsi
