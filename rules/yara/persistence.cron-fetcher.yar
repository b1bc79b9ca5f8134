rule persistence_cron_fetcher
{
    meta:
        id = "persistence.cron-fetcher"
        description = "A crontab line that downloads a script and pipes it into a shell on a schedule"
        severity = "critical"
        confidence = "high"
        category = "persistence"
        attack = "T1053.003"
        scope = "exec"
    strings:
        $line = /(^|\n)\s*(@(reboot|hourly|daily)|([0-9*\/,\-]+\s+){4}[0-9*\/,\-]+)\s+(\S+\s+)?[^\n]{0,40}\b(curl|wget)\b[^\n]{0,200}\|\s*(ba|da)?sh\b/
    condition:
        $line
}
