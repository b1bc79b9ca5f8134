rule persistence_shell_profile
{
    meta:
        id = "persistence.shell-profile"
        description = "A shell profile or alias file that starts a background program from a temporary or hidden directory, or downloads and runs code, at every login"
        severity = "high"
        confidence = "high"
        category = "persistence"
        attack = "T1546.004"
        scope = "file"
        path_include = "/etc/profile,/etc/profile.d/*,/etc/bash.bashrc,/etc/bashrc,/etc/zsh/zshrc,/etc/skel/.*,/root/.bashrc,/root/.profile,/root/.bash_profile,/root/.bash_login,/root/.bash_aliases,/root/.zshrc,/home/*/.bashrc,/home/*/.profile,/home/*/.bash_profile,/home/*/.bash_login,/home/*/.bash_aliases,/home/*/.zshrc"
    strings:
        // A command position (line start, after ; && then do {) and a lone '&' that ends the command (before a
        // newline, ;, fi, done, } or disown) bracket each background start, plain or guarded by "if ! pidof".
        // a program under /tmp, /var/tmp, /dev/shm or a dot-directory, sent to the background
        $bg_hidden = /(^|\n|;|&&|\bthen\s|\bdo\s|\{)[ \t]*(nohup\s+|setsid\s+|exec\s+)?(\/tmp\/|\/var\/tmp\/|\/dev\/shm\/|(~|\$HOME|\$\{HOME\}|\/root|\/home\/[^\/\s]+)?\/\.[A-Za-z0-9_][A-Za-z0-9_.\-]*\/)[^\s;&|]+[^\n]{0,160}\s&[ \t]*(disown\b|fi\b|done\b|\}|;|\n|$)/
        // any program started detached and silenced on login (the Dero worm's .bash_aliases); profiles source
        // and export, they do not daemonise
        $bg_nohup = /(^|\n|;|&&|\bthen\s|\bdo\s|\{)[ \t]*(nohup|setsid)\s+\S+[^\n]{0,160}\s&[ \t]*(disown\b|fi\b|done\b|\}|;|\n|$)/
        $bg_silent = /(^|\n|;|&&|\bthen\s|\bdo\s|\{)[ \t]*\/[^\s;&|]+[^\n]{0,80}(>\s*\/dev\/null\s+2>&1|&>\s*\/dev\/null)\s*&[ \t]*(disown\b|fi\b|done\b|\}|;|\n|$)/
        $fetch = /\b(curl|wget)\b[^\n]{0,200}\|\s*(ba|da)?sh\b/
        $b64 = /\bbase64\s+(-d|--decode)\b[^\n]{0,80}\|\s*(ba|da)?sh\b/
    condition:
        any of them
}
