rule backdoor_reverse_shell_nc
{
    meta:
        id = "backdoor.reverse-shell-nc"
        description = "netcat serving a shell to a remote host (nc -e, or a mkfifo relay)"
        severity = "critical"
        confidence = "high"
        category = "backdoor"
        attack = "T1059.004"
        scope = "exec"
    strings:
        $nc_e = /\b(nc|ncat|netcat|nc\.traditional)\s+(-[a-z]+\s+)*-(e|c)\s*\/bin\/(ba)?sh\b/
        $nc_e_after = /\b(nc|ncat|netcat)\s+[A-Za-z0-9.\-]+\s+[0-9]{1,5}\s+-(e|c)\s*\/bin\/(ba)?sh\b/
        $fifo = /mkfifo\s+\S+[^\n]{0,80}\|\s*\/bin\/(ba)?sh\s+-i[^\n]{0,80}\|\s*(nc|ncat|netcat)\s/
    condition:
        any of them
}
