rule persistence_cron_install
{
    meta:
        id = "persistence.cron-install"
        description = "A script that installs a cron entry (echo >> a crontab, crontab -, a heredoc into a cron file) whose command fetches code, opens a shell or runs from a temporary or hidden directory"
        severity = "critical"
        confidence = "high"
        category = "persistence"
        attack = "T1053.003"
        scope = "exec"
    strings:
        // A Dockerfile or entrypoint adding "0 3 * * * /usr/local/bin/backup" to the crontab is ordinary: the
        // installed command must be a payload (download, interpreter one-liner, socket, decoder, temp or dot path).
        $echo = /\b(echo|printf)\s+(-e\s+)?["']?(@reboot|@hourly|@daily|([0-9*\/,\-]+[ \t]+){4}[0-9*\/,\-]+)[ \t][^\n]{0,200}(\b(curl|wget)\b|\bpython[23]?\s+-c\b|\/dev\/(tcp|udp)\/|\b(nc|ncat)\s|\bbase64\b|\/tmp\/|\/var\/tmp\/|\/dev\/shm\/|\/\.[A-Za-z0-9_])[^\n]{0,300}(>>?\s*\S*(\/etc\/crontab|\/etc\/cron\.d\/|\/etc\/crontabs\/|\/var\/spool\/cron\/)|\|\s*crontab\s+-)/
        $heredoc = /\bcat\s+>>?\s*\S*(\/etc\/crontab|\/etc\/cron\.d\/|\/etc\/crontabs\/|\/var\/spool\/cron\/)\S*\s*<<-?\s*['"]?\w+['"]?[ \t]*\n[ \t]*(@reboot|@hourly|@daily|([0-9*\/,\-]+[ \t]+){4}[0-9*\/,\-]+)[ \t][^\n]{0,200}(\b(curl|wget)\b|\bpython[23]?\s+-c\b|\/dev\/(tcp|udp)\/|\b(nc|ncat)\s|\bbase64\b|\/tmp\/|\/var\/tmp\/|\/dev\/shm\/|\/\.[A-Za-z0-9_])/
    condition:
        any of them
}
