truncate -s 0 /var/log/auth.log
