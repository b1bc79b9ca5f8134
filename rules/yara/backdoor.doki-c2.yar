rule backdoor_doki_c2
{
    meta:
        id = "backdoor.doki-c2"
        description = "Doki's C2 lookup: a dogecoin wallet's sent transactions from dogechain.info turned into a ddns.net host name"
        severity = "critical"
        confidence = "high"
        category = "backdoor"
        attack = "T1568"
        scope = "file"
    strings:
        $api = "dogechain.info/api/v1/address/sent/" ascii wide nocase
        $ddns = ".ddns.net" ascii wide nocase
    condition:
        $api and $ddns
}
