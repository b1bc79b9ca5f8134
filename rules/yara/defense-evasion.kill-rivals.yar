rule defense_evasion_kill_rivals
{
    meta:
        id = "defense-evasion.kill-rivals"
        description = "A script that kills rival miners or blocks their pools and also fetches, launches or persists code of its own"
        severity = "high"
        confidence = "high"
        category = "defense-evasion"
        attack = "T1489"
        scope = "exec"
    strings:
        // kill lists: rival miner names, their pool ports and images
        $k_psgrep = /\bps\s+-?(aux|auxf|axf|ef|e)\b[^\n]{0,80}\|\s*(e?grep|awk)\b[^\n]{0,160}(stratum|cryptonight|kdevtmpfsi|kinsing|xmrig|minerd|kworkerds|sysupdate|dbused|-p x)[^\n]{0,200}\bkill\b/
        $k_pkill = /\b(pkill|killall)\s+(-9\s+|-f\s+|-KILL\s+)*["']?[^\n]{0,30}(kdevtmpfsi|kinsing|xmrig|minerd|cryptonight|stratum|kworkerds|sysupdate|networkservice|dbused)/
        $k_netstat = /\bnetstat\s+-[a-z]+[^\n]{0,40}\|\s*grep[^\n]{0,40}(:3333|:4444|:5555|:7777|:14444|:14433|stratum)[^\n]{0,160}\bkill\b/
        $k_docker = /\bdocker\s+ps\b[^\n]{0,120}(pocosow|gakeaws|azulu|xmr|monero|kinsing)[^\n]{0,200}\bdocker\s+(rm|kill|stop)\b/
        $k_hosts1 = /(127\.0\.0\.1|0\.0\.0\.0)\s+[a-z0-9.\-]*(minexmr|supportxmr|c3pool|nanopool|moneroocean|f2pool|xmrpool|crypto-pool|hashvault)[^\n]{0,60}>>?\s*\/etc\/hosts/
        $k_hosts2 = /\bsed\s[^\n]{0,100}(minexmr|supportxmr|c3pool|nanopool|moneroocean|f2pool|xmrpool|crypto-pool|hashvault)[^\n]{0,100}\/etc\/hosts/
        // ... and something of its own: a download, a launch, or a new scheduled job. An incident-response cleanup
        // script has the kill list but only removes things.
        $own_fetch = /\b(curl|wget)\b[^\n]{0,120}((https?|ftp):\/\/|\b[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\b)/
        $own_devtcp = /<>\s*\/dev\/tcp\//
        $own_chmod = /\bchmod\s+(\+x|[aug]\+x|0?777)\s/
        $own_nohup = /\b(nohup|setsid)\s+\S/
        $own_miner_pool = /\s-o\s+\S+:[0-9]{2,5}/
        $own_miner_donate = /\s--donate-level/
        $own_miner_config = /\s-c\s+\S*config[^\s]*\.json/
        $own_cron = /\becho\s+["']?(\*|@reboot|[0-9*\/,]+\s+\*)[^\n]{0,200}(>>|\|\s*crontab\s+-)/
        $own_unit = /\bsystemctl\s+enable\s/
    condition:
        any of ($k_*) and any of ($own_*)
}
