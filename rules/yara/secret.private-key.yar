rule secret_private_key
{
    meta:
        id = "secret.private-key"
        description = "A PEM or OpenSSH private key with its key material, baked into the image"
        severity = "high"
        confidence = "medium"
        category = "secret"
        attack = "T1552.004"
        scope = "file"
        // SSH host keys have their own rule (secret.ssh-host-key) with their own severity
        path_exclude = "/etc/ssh/ssh_host_*_key"
    strings:
        // the armour line, optional PEM headers (Proc-Type, DEK-Info), then a full line of base64 key material:
        // a document that shows only the armour lines does not match
        $pem = /-----BEGIN (RSA |EC |DSA |OPENSSH |ENCRYPTED |ED25519 )?PRIVATE KEY-----[ \t]*\r?\n([A-Za-z\-]+:[^\n]*\r?\n)*(\r?\n)?[A-Za-z0-9+\/=]{60,}\r?\n/
    condition:
        $pem
}
