rule worm_docker_api_spread
{
    meta:
        id = "worm.docker-api-spread"
        description = "Drives other hosts' exposed Docker APIs (docker -H …:2375 run, POST /containers/create)"
        severity = "critical"
        confidence = "high"
        category = "worm"
        attack = "T1610"
        scope = "exec"
    strings:
        $remote_run = /\bdocker\s+-H\s+(tcp:\/\/)?[A-Za-z0-9.$\{\}_\-]+:237[56]\s+(run|exec|create|start)\b/
        $api_create = /:237[56]\/(v1\.[0-9]+\/)?containers\/create/
        // scanning for the port is worm.mass-scan-docker
    condition:
        any of them
}
