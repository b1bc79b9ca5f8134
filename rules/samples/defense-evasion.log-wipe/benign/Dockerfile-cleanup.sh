#!/bin/sh
# image build hygiene: drop package caches and build logs to keep the layer small
apt-get clean
rm -rf /var/lib/apt/lists/* /var/log/apt/* /var/log/dpkg.log /var/log/alternatives.log
