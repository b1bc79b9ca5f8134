#!/bin/bash
# probe the local port without curl
timeout 1 bash -c '</dev/tcp/127.0.0.1/8080' && echo up
