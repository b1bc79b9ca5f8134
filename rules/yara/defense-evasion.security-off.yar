rule defense_evasion_security_off
{
    meta:
        id = "defense-evasion.security-off"
        description = "A script that switches off host protections: SELinux, AppArmor, the firewall, cloud security agents, the NMI watchdog"
        severity = "high"
        confidence = "medium"
        category = "defense-evasion"
        attack = "T1562.001"
        scope = "exec"
    strings:
        // Commands count where a shell would run them (line start, after ; && || |, then/do, sudo, sh -c '...'),
        // not inside prose or a man page: "run `setenforce 0`" in a README and "setenforce [Enforcing|Permissive|1|0]" do not.
        $selinux_off = /(^|[\n;&|(]|\bthen\s|\bdo\s|\belse\s|-c\s+["'])[ \t]*(sudo\s+)?setenforce\s+(0|Permissive)\b/
        $selinux_cfg1 = /\bsed\s[^\n]{0,80}SELINUX=(disabled|permissive)[^\n]{0,80}\/etc\/(sysconfig\/selinux|selinux\/config)/
        $selinux_cfg2 = /\becho\s+["']?SELINUX=(disabled|permissive)["']?\s*>{1,2}\s*\/etc\/(sysconfig\/selinux|selinux\/config)/
        $apparmor = /(^|[\n;&|(]|\bthen\s|\bdo\s|-c\s+["'])[ \t]*(sudo\s+)?(systemctl\s+(stop|disable|mask)\s+apparmor|service\s+apparmor\s+(stop|teardown)|\/etc\/init\.d\/apparmor\s+(stop|teardown)|aa-teardown\b)/
        $ufw = /(^|[\n;&|(]|\bthen\s|\bdo\s|-c\s+["'])[ \t]*(sudo\s+)?ufw\s+disable\b/
        // Alibaba Cloud (aegis, AliYunDun, cloudmonitor) and Tencent Cloud (YunJing, YDService, stargate) agents
        $agent1 = /\b(rm\s+-[rRf]{1,3}|pkill(\s+-9)?|killall(\s+-9)?|kill\s+-9|systemctl\s+(stop|disable|mask)|chkconfig\s+--del)\s[^\n]{0,40}(aegis|AliYunDun|aliyun\.service|cloudmonitor|CmsGoAgent|YunJing|YDService|YDLive|qcloud\/stargate|barad_agent)/
        $agent2 = /(aegis|YunJing|cloudmonitor|qcloud)[^\n]{0,60}\/uninst(all)?(\.sh)?\b/
        $agent3 = /(\bservice\s+|\/etc\/init\.d\/)(aegis|cloudmonitor|aliyun|YDService|yunjing)\S*\s+stop\b/
        // weaker on their own: a firewall script flushes before it adds rules, perf tuning turns the watchdog off
        $ipt_flush = /(^|[\n;&|(]|\bthen\s|\bdo\s)[ \t]*(sudo\s+)?iptables\s+(-w\s+)?(-t\s+\w+\s+)?(-F|--flush)\b/
        $ipt_accept = /\biptables\s+(-w\s+)?-P\s+(INPUT|FORWARD|OUTPUT)\s+ACCEPT\b/
        $ipt_restrict = /\biptables\s[^\n]{0,120}(-j\s+(DROP|REJECT)|-P\s+(INPUT|FORWARD)\s+DROP)\b/
        $nmi = /(kernel\.nmi_watchdog\s*=\s*0|echo\s+["']?0["']?\s*>\s*\/proc\/sys\/kernel\/nmi_watchdog)/
    condition:
        any of ($selinux*, $apparmor, $ufw, $agent*) or
        (($ipt_flush or $ipt_accept) and not $ipt_restrict and $nmi) or
        ($ipt_flush and $ipt_accept and not $ipt_restrict)
}
