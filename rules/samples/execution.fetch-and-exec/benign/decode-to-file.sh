#!/bin/sh
# a Kubernetes Secret's value decoded to a file, never into a shell
echo "$TLS_CRT_B64" | base64 -d > /etc/ssl/certs/app.crt
curl -fsSL https://downloads.example.invalid/install.sh -o /tmp/install.sh
