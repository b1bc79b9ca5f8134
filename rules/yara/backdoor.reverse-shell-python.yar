rule backdoor_reverse_shell_python
{
    meta:
        id = "backdoor.reverse-shell-python"
        description = "Python snippet that connects out, duplicates the socket onto stdio and spawns a shell"
        severity = "critical"
        confidence = "high"
        category = "backdoor"
        attack = "T1059.006"
        scope = "exec"
    strings:
        $connect = /\.connect\(\(\s*["'][^"']{1,100}["']\s*,\s*[0-9]{1,5}\s*\)\)/
        $dup2 = "os.dup2("
        $spawn1 = /pty\.spawn\(\s*["']\/bin\/(ba)?sh["']/
        $spawn2 = /subprocess\.(call|Popen|run)\(\s*\[\s*["']\/bin\/(ba)?sh["']\s*,\s*["']-i["']/
    condition:
        $connect and $dup2 and any of ($spawn*) and
        @dup2[1] > @connect[1] and @dup2[1] - @connect[1] < 400
}
