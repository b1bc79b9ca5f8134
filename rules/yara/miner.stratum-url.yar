rule miner_stratum_url
{
    meta:
        id = "miner.stratum-url"
        description = "A stratum mining-pool URL (stratum+tcp/ssl/tls://host:port)"
        severity = "high"
        confidence = "high"
        category = "miner"
        attack = "T1496"
        scope = "file"
    strings:
        $url = /stratum\+(tcp|ssl|tls):\/\/[A-Za-z0-9.\-]+:[0-9]{2,5}/
    condition:
        $url
}
