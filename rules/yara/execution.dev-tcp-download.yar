rule execution_dev_tcp_download
{
    meta:
        id = "execution.dev-tcp-download"
        description = "A curl-less downloader: bash's /dev/tcp opened on a descriptor, an HTTP GET written to it and the body kept"
        severity = "high"
        confidence = "medium"
        category = "backdoor"
        attack = "T1105"
        scope = "exec"
    strings:
        $open = /\bexec\s+[0-9]{1,2}<>\s*\/dev\/tcp\/[A-Za-z0-9.\-$\{\}_]+\/[0-9A-Za-z$\{\}_]+/
        $get = /\b(printf|echo)\s[^\n]{0,20}["']GET\s[^\n]{0,160}>&\s*[0-9]{1,2}/
        // what makes it a download rather than a health probe: skipping the headers, then keeping the body
        $headers = /while\s+(IFS=\s*)?read\s[^\n]{0,120}(\\r|\$'\\r')[^\n]{0,60}\bbreak\b/
        $keep1 = /\b(cat|dd|tail|sed)\b[^\n]{0,40}<&\s*[0-9]{1,2}\s*[^\n]{0,20}(>\s*\S|\|\s*(ba)?sh\b)/
        $keep2 = /<&\s*[0-9]{1,2}\s*>\s*[\/$.\w]/
    condition:
        $open and $get and ($headers or any of ($keep*))
}
