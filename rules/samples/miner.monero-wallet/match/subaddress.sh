./cloud -o pool.example.invalid:443 -u 8BCr6GXov8DX5NgkAX4WkdehzcT87zYSaA36KE66u88uFyiVFfmLidTZVfCPFvnf2wRiRbeKDeSdsCnqjWYwcCCBHBSTj4c --tls
