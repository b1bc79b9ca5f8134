rule backdoor_ssh_key_root
{
    meta:
        id = "backdoor.ssh-key-root"
        description = "An SSH public key baked into root's authorized_keys: whoever holds the private key can log in"
        severity = "high"
        confidence = "high"
        category = "backdoor"
        attack = "T1098.004"
        scope = "file"
        path_include = "/root/.ssh/authorized_keys*"
    strings:
        $key = /(ssh-(rsa|dss|ed25519)|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\.com) AAAA[0-9A-Za-z+\/]{40,}/
    condition:
        $key
}
