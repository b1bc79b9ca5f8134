rule defense_evasion_log_wipe
{
    meta:
        id = "defense-evasion.log-wipe"
        description = "A script that erases login records and system logs (wtmp, lastlog, secure, syslog), or wipes logs and deletes itself"
        severity = "medium"
        confidence = "medium"
        category = "defense-evasion"
        attack = "T1070.002"
        scope = "exec"
    strings:
        // The empty-redirect forms must end the command, so HTML like "<TT>\n>/var/log/wtmp</TT>" does not match.
        // Login records and security logs are what an intruder hides from: emptying or removing them is the signal.
        $records_empty = /(^|[\n;&|(]|\bthen\s|\bdo\s)[ \t]*(cat\s+\/dev\/null\s*|echo\s*(-n\s*)?(""|'')?\s*|:\s*|true\s*)?>\s*\/var\/(log|run)\/(wtmp|btmp|lastlog|utmp|secure|auth\.log|faillog)[ \t]*([\n;&|)]|$)/
        $records_trunc = /\btruncate\s+(-s\s*0|--size[= ]0)\s+\/var\/(log|run)\/(wtmp|btmp|lastlog|utmp|secure|auth\.log|faillog)\b/
        $records_rm = /\b(rm|shred)\s+-[rRfuz]{1,4}\s+(\S+\s+)*\/var\/(log|run)\/(wtmp|btmp|lastlog|utmp|secure|auth\.log|faillog)\b/
        // General logs: image builds clear /var/log/apt and dpkg.log for size, so these count only together
        $logs_empty = /(^|[\n;&|(]|\bthen\s|\bdo\s)[ \t]*(cat\s+\/dev\/null\s*|echo\s*(-n\s*)?(""|'')?\s*|:\s*)?>\s*\/var\/log\/(syslog|messages|cron|kern\.log|maillog)[ \t]*([\n;&|)]|$)/
        $logs_rm = /\brm\s+-[rRf]{1,3}\s+(\S+\s+)*\/var\/log(\/\*?)?(\s|$|;)/
        $logs_hist = /\bchattr\s+\+i\s+\S*\.bash_history\b/
        $self_delete = /\brm\s+(-[rf]{1,2}\s+)?(--\s+)?["']?\$0["']?(\s|$|;)/
    condition:
        any of ($records*) or 2 of ($logs*, $self_delete)
}
