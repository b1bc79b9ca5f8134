sed -i 's/SELINUX=enforcing/SELINUX=disabled/' /etc/selinux/config && sh -c 'setenforce 0'
