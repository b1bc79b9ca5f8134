rule miner_xmrig_binary
{
    meta:
        id = "miner.xmrig-binary"
        description = "An executable carrying XMRig miner strings, whatever its file name"
        severity = "critical"
        confidence = "high"
        category = "miner"
        attack = "T1496"
        scope = "file"
    strings:
        $name = "XMRig" ascii
        $s1 = "randomx" ascii nocase
        $s2 = "donate-level" ascii
        $s3 = "stratum+tcp" ascii
        $s4 = "cryptonight" ascii nocase
    condition:
        (uint32(0) == 0x464c457f or uint16(0) == 0x5a4d) and $name and 2 of ($s*)
}
