#!/bin/sh
# build a chroot for packaging
debootstrap bookworm /tmp/rootfs http://deb.example.invalid/debian
chroot /tmp/rootfs apt-get install -y build-essential
cp /etc/resolv.conf /mnt/build/etc/resolv.conf
