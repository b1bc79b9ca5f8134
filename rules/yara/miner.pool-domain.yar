rule miner_pool_domain
{
    meta:
        id = "miner.pool-domain"
        description = "A known Monero mining pool host used as a connection target (host:port, -o/--url, a url or pool value in a config)"
        severity = "high"
        confidence = "medium"
        category = "miner"
        attack = "T1496"
        scope = "exec"
    strings:
        // A bare list of pool names is what security tools ship (Falco's miner_domains); only a pool host used
        // as a target, with a port or a miner's URL option, is a connection a miner would make.
        $host_port = /[a-z0-9.\-]*\b(supportxmr\.com|moneroocean\.stream|nanopool\.org|c3pool\.(com|org)|minexmr\.com|hashvault\.pro|f2pool\.com|minergate\.com|unmineable\.com|xmrpool\.eu|crypto-pool\.fr):[0-9]{2,5}\b/ nocase
        $flag = /(\s-o|--url[= ]|--pool[= ])\s*["']?[a-z0-9+:\/]*[a-z0-9.\-]*\b(supportxmr\.com|moneroocean\.stream|nanopool\.org|c3pool\.(com|org)|minexmr\.com|hashvault\.pro|f2pool\.com|minergate\.com|unmineable\.com|xmrpool\.eu|crypto-pool\.fr)\b/ nocase
        $json = /"(url|pool|host)"\s*:\s*"[a-z0-9+:\/]*[a-z0-9.\-]*\b(supportxmr\.com|moneroocean\.stream|nanopool\.org|c3pool\.(com|org)|minexmr\.com|hashvault\.pro|f2pool\.com|minergate\.com|unmineable\.com|xmrpool\.eu|crypto-pool\.fr)\b/ nocase
    condition:
        any of them
}
