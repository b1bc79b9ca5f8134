rule persistence_systemd_unit
{
    meta:
        id = "persistence.systemd-unit"
        description = "A systemd unit that downloads and runs code, or keeps a binary from /tmp, /dev/shm or a hidden directory running"
        severity = "critical"
        confidence = "high"
        category = "persistence"
        attack = "T1543.002"
        scope = "file"
        path_include = "/etc/systemd/system/*,/lib/systemd/system/*,/usr/lib/systemd/system/*,/run/systemd/system/*,/etc/systemd/user/*,/usr/lib/systemd/user/*,/root/.config/systemd/user/*,/home/*/.config/systemd/user/*"
    strings:
        $exec_fetch = /(^|\n)[ \t]*Exec(Start|StartPre|StartPost|Reload)[ \t]*=[^\n]{0,200}\b(curl|wget)\b[^\n]{0,200}\|\s*(ba|da)?sh\b/
        $exec_b64 = /(^|\n)[ \t]*Exec(Start|StartPre|StartPost)[ \t]*=[^\n]{0,200}\bbase64\s+(-d|--decode)\b[^\n]{0,80}\|\s*(ba|da)?sh\b/
        // the program itself (first word after the optional -@+! prefixes) lives somewhere nothing is installed
        $exec_tmp = /(^|\n)[ \t]*Exec(Start|StartPre|StartPost)[ \t]*=[ \t]*[-@+!:]*[ \t]*(\/usr\/bin\/env\s+)?(\/tmp\/|\/var\/tmp\/|\/dev\/shm\/|[^\s]*\/\.[A-Za-z0-9_][A-Za-z0-9_.\-]*\/)/
        $restart = /(^|\n)[ \t]*Restart[ \t]*=[ \t]*(always|on-failure)\b/
    condition:
        $exec_fetch or $exec_b64 or ($exec_tmp and $restart)
}
