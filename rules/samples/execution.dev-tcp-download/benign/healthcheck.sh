#!/bin/bash
# distroless-style health probe without curl: ask for /healthz and look for a 200
exec 3<>/dev/tcp/127.0.0.1/8080
printf 'GET /healthz HTTP/1.0\r\n\r\n' >&3
grep -q ' 200 ' <&3
