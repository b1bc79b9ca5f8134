rule execution_fetch_and_exec
{
    meta:
        id = "execution.fetch-and-exec"
        description = "A download or a decoded blob piped straight into a shell (curl|sh, wget -O- | bash, base64 -d | sh)"
        severity = "high"
        confidence = "medium"
        category = "backdoor"
        attack = "T1059.004"
        scope = "exec"
    strings:
        $curl = /\b(curl|wget)\b[^\n|;&]{0,200}\|\s*(sudo\s+)?(ba|da)?sh\b/
        $b64 = /\bbase64\s+(-d|--decode)\b[^\n|;&]{0,80}\|\s*(ba|da)?sh\b/
    condition:
        any of them
}
