rule host_escape_host_mount
{
    meta:
        id = "host-escape.host-mount"
        description = "A script that reaches the host from a container: writes into a host mount, chroots into it, nsenters PID 1 or runs a privileged container with / mounted"
        severity = "critical"
        confidence = "high"
        category = "host-escape"
        attack = "T1611"
        scope = "exec"
    strings:
        // writes into a host filesystem mounted at /mnt, /host, ... (the docker123321 crontab trick, key implants)
        $write = /(>>?|\btee\s+(-a\s+)?|\bcp\s+(-[a-z]+\s+)?\S+\s+|\bsed\s+-i[^\n]{0,80}\s|\btouch\s+)\s*\/(mnt|host|hostfs|rootfs|host-root|hostroot)\/(etc\/(crontab|cron\.d|crontabs|cron\.hourly|passwd|shadow|sudoers|ld\.so\.preload|systemd|rc\.local|profile)|root\/\.ssh|var\/spool\/cron)/
        // chroot into such a mount followed by a command (the host's own shell)
        $chroot = /(^|[\s;&|'"(])chroot\s+\/(mnt|host|hostfs|rootfs|tmp)\/?\s+[\/A-Za-z$"'-]/
        // nsenter into PID 1's mount namespace: the host's init
        $nsenter1 = /\bnsenter\s[^\n]{0,60}(-t\s*1|--target[= ]1)\s[^\n]{0,60}(-m\b|--mount\b|-a\b|--all\b)/
        $nsenter2 = /\bnsenter\s[^\n]{0,60}(-m\b|--mount\b|-a\b|--all\b)[^\n]{0,60}(-t\s*1|--target[= ]1)\b/
        // a privileged container with the host root mounted writable (":ro" mounts are the monitoring-agent kind)
        $priv1 = /\bdocker\s[^\n]{0,80}\brun\b[^\n]{0,200}--privileged\b[^\n]{0,200}\s(-v|--volume)[ =]\/:\/[a-z]+(\s|:rw\b)/
        $priv2 = /\bdocker\s[^\n]{0,80}\brun\b[^\n]{0,200}\s(-v|--volume)[ =]\/:\/[a-z]+(\s|:rw\b)[^\n]{0,200}--privileged\b/
    condition:
        any of them
}
