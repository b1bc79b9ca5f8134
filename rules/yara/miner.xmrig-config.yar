rule miner_xmrig_config
{
    meta:
        id = "miner.xmrig-config"
        description = "XMRig-style miner configuration: a pools list with url/user plus miner tuning keys"
        severity = "critical"
        confidence = "high"
        category = "miner"
        attack = "T1496"
        scope = "file"
    strings:
        $pools = /"pools"\s*:\s*\[/
        $url = /"url"\s*:\s*"/
        $user = /"user"\s*:\s*"/
        $tune1 = "\"donate-level\""
        $tune2 = "\"randomx\""
        $tune3 = "\"huge-pages\""
        $tune4 = "\"max-threads-hint\""
    condition:
        $pools and $url and $user and any of ($tune*)
}
