rule secret_ssh_host_key
{
    meta:
        id = "secret.ssh-host-key"
        description = "An SSH host private key baked into the image: every container started from it shares one host identity"
        severity = "low"
        confidence = "high"
        category = "secret"
        attack = "T1552.004"
        scope = "file"
        path_include = "/etc/ssh/ssh_host_*_key"
    strings:
        $pem = /-----BEGIN (RSA |EC |DSA |OPENSSH )?PRIVATE KEY-----[ \t]*\r?\n[A-Za-z0-9+\/=]{60,}\r?\n/
    condition:
        $pem
}
