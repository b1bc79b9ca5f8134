rule credential_theft_harvest
{
    meta:
        id = "credential-theft.harvest"
        description = "A script that reads cloud, Docker or Kubernetes credentials and posts data out (curl -d/-F/-T, wget --post)"
        severity = "critical"
        confidence = "medium"
        category = "credential-theft"
        attack = "T1552.005"
        scope = "exec"
    strings:
        // where the credentials are (the IMDSv2 token endpoint alone is what every SDK calls first, so not here)
        $r_imds = /169\.254\.169\.254\/latest\/meta-data\/iam\/security-credentials/
        $r_azure = /169\.254\.169\.254\/metadata\/identity\/oauth2\/token/
        $r_gcp = /metadata(\.google\.internal)?\/computeMetadata\/v1\/instance\/service-accounts/
        // credential files count when a command reads them (cat, tar, cp, a for-loop, curl's @file, a < redirect),
        // not when prose says where they live
        $r_file = /(\bcat|\bbase64|\btar|\bcp|\bgzip|\bxxd|\bfor\s+\w+\s+in|@|<)[^\n]{0,80}(\.aws\/credentials|\.docker\/config\.json)\b/
        $r_k8s = /(\bcat|\bbase64|\btar|\bcp|\bfor\s+\w+\s+in|@|<)[^\n]{0,80}\/var\/run\/secrets\/kubernetes\.io\/serviceaccount\/token/
        // and sending something out
        $s_curl = /\bcurl\b[^\n]{0,200}\s(-d|--data(-binary|-raw|-urlencode)?|-F|--form|-T|--upload-file)[\s=@"']/
        $s_wget = /\bwget\b[^\n]{0,200}--post-(data|file)\b/
        $s_nc = /\b(nc|ncat|netcat)\s+[A-Za-z0-9.\-]+\s+[0-9]{1,5}\s*<\s*\S/
        // an in-cluster client authenticates to its own API server with the token: that is use, not theft
        $k8s_api = /(kubernetes\.default(\.svc)?|\$\{?KUBERNETES_SERVICE_HOST)/
    condition:
        any of ($s_*) and
        (any of ($r_imds, $r_azure, $r_gcp, $r_file) or ($r_k8s and not $k8s_api))
}
