rule defense_evasion_history_wipe
{
    meta:
        id = "defense-evasion.history-wipe"
        description = "A script that erases shell history (two or more history anti-forensics idioms together)"
        severity = "medium"
        confidence = "medium"
        category = "defense-evasion"
        attack = "T1070.003"
        scope = "exec"
    strings:
        // as a command (line start, after ; && || |, then/do), not quoted in a changelog: "after `history -c' or"
        $h1 = /(^|[\n;&|(]|\bthen\s|\bdo\s)[ \t]*history\s+-c\b/
        $h2 = /\bHISTFILE=\/dev\/null\b/
        $h3 = /\bchattr\s+\+i\s+\S*\.bash_history\b/
        $h4 = /\brm\s+-(r?f|fr?)\s+\S*\.bash_history\b/
        // log truncation moved to defense-evasion.log-wipe, which weighs it on its own
        $h6 = /\bunset\s+HISTFILE\b/
        $h7 = /\bln\s+-s?f?s?\s+\/dev\/null\s+\S*\.bash_history\b/
        $h8 = /\bHISTSIZE=0\b/
    condition:
        2 of them
}
