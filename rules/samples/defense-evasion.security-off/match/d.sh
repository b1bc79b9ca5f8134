#!/bin/bash
setenforce 0 2>/dev/null
echo SELINUX=disabled > /etc/selinux/config
service apparmor stop
systemctl disable apparmor
ufw disable
iptables -F
