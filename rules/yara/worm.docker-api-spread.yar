rule worm_docker_api_spread
{
    meta:
        id = "worm.docker-api-spread"
        description = "Drives other hosts' exposed Docker APIs (docker -H …:2375 run, POST /containers/create) or scans for them"
        severity = "critical"
        confidence = "high"
        category = "worm"
        attack = "T1610"
    strings:
        $remote_run = /\bdocker\s+-H\s+(tcp:\/\/)?[A-Za-z0-9.$\{\}_\-]+:237[56]\s+(run|exec|create|start)\b/
        $api_create = /:237[56]\/(v1\.[0-9]+\/)?containers\/create/
        $scan = /\b(masscan|zmap|pnscan)\b[^\n]{0,80}(-p\s*|--ports?\s*|\s)(2375|2376)\b/
    condition:
        any of them
}
