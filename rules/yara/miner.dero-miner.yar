rule miner_dero_miner
{
    meta:
        id = "miner.dero-miner"
        description = "An executable that mines Dero (AstroBWT proof of work) for a wallet address compiled into it"
        severity = "critical"
        confidence = "high"
        category = "miner"
        attack = "T1496"
        scope = "file"
    strings:
        $pow = "astrobwt" ascii nocase
        // Dero addresses: "dero1" then bech32 characters (no 1 b i o after the separator)
        $wallet = /dero1[qpzry9x8gf2tvdw0s3jn54khce6mua7l]{50,90}/
        $work1 = "getwork" ascii
        $work2 = /hash ?rate/ ascii nocase
    condition:
        // the Dero node and wallet also carry astrobwt; a payout address baked into a mining binary does not
        uint32(0) == 0x464c457f and $pow and $wallet and any of ($work*)
}
