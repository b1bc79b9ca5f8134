rule miner_monero_wallet
{
    meta:
        id = "miner.monero-wallet"
        description = "A Monero address (standard, subaddress or integrated), checked against its Keccak checksum"
        severity = "high"
        confidence = "medium"
        category = "miner"
        attack = "T1496"
        scope = "file"
        validate = "monero-address"
    strings:
        // Mainnet, base58 without 0 O I l; \b keeps a 95-character window from matching inside a longer run.
        // The second character follows from the network byte in the first 8-byte block: 18 (standard) gives
        // 4[1-9AB], 19 (integrated, 106 characters) 4[B-M], 42 (subaddress) 8[2-9ABC].
        $standard = /\b4[1-9AB][1-9A-HJ-NP-Za-km-z]{93}\b/
        $subaddress = /\b8[2-9ABC][1-9A-HJ-NP-Za-km-z]{93}\b/
        $integrated = /\b4[B-HJ-M][1-9A-HJ-NP-Za-km-z]{104}\b/
    condition:
        any of them
}
