rule defense_evasion_history_wipe
{
    meta:
        id = "defense-evasion.history-wipe"
        description = "A script that erases shell history and logs (two or more anti-forensics idioms together)"
        severity = "medium"
        confidence = "medium"
        category = "defense-evasion"
        attack = "T1070.003"
    strings:
        $h1 = /\bhistory\s+-c\b/
        $h2 = /\bHISTFILE=\/dev\/null\b/
        $h3 = /\bchattr\s+\+i\s+\S*\.bash_history\b/
        $h4 = /\brm\s+-(r?f|fr?)\s+\S*\.bash_history\b/
        $h5 = /(>|cat\s+\/dev\/null\s*>)\s*\/var\/log\/(wtmp|secure|syslog|auth\.log|cron)\b/
        $h6 = /\bunset\s+HISTFILE\b/
    condition:
        2 of them
}
