rule worm_mass_scan_docker
{
    meta:
        id = "worm.mass-scan-docker"
        description = "Internet scanners (masscan, zmap, zgrab, pnscan) aimed at the Docker API ports 2375/2376"
        severity = "high"
        confidence = "high"
        category = "worm"
        attack = "T1046"
        scope = "exec"
    strings:
        $masscan = /\bmasscan\b[^\n]{0,120}(-p\s*|--ports?[= ]\s*)([0-9,\-]+,)?237[56]\b/
        $zmap = /\bzmap\b[^\n]{0,120}(-p\s*|--target-port[= ]\s*)237[56]\b/
        $zgrab = /\bzgrab2?\b[^\n]{0,120}(--port[= ]\s*|-p\s*)237[56]\b/
        // pnscan takes the port after the target range
        $pnscan = /\bpnscan\b[^\n]{0,120}\s237[56]\b/
    condition:
        any of them
}
