pnscan -t512 -R '"Docker"' -W 'GET /version HTTP/1.0\r\n\r\n' 203.0.113.0/24 2375 > /tmp/.r
zgrab --port 2375 --http="/v1.16/version" --output-file=/tmp/.z < /tmp/.r
zmap -p 2376 -o /tmp/.zm 198.51.100.0/24
