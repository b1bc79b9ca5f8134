rule secret_github_token
{
    meta:
        id = "secret.github-token"
        description = "A GitHub token (classic ghp_/gho_/ghu_/ghs_/ghr_ or fine-grained github_pat_)"
        severity = "high"
        confidence = "medium"
        category = "secret"
        attack = "T1552.001"
        scope = "file"
    strings:
        $classic = /\b(ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{36}\b/
        $fine = /\bgithub_pat_[A-Za-z0-9]{22}_[A-Za-z0-9]{59}\b/
        // documentation placeholders: ghp_xxxx…, ghp_0000…, ghp_XXXX…
        $placeholder = /\b(ghp|gho|ghu|ghs|ghr|github_pat)_[A-Za-z0-9_]{0,30}(xxxxxx|XXXXXX|000000|111111|aaaaaa|AAAAAA)/
    condition:
        for any i in (1..#classic): (not for any k in (1..#placeholder): (@placeholder[k] == @classic[i])) or
        for any i in (1..#fine): (not for any k in (1..#placeholder): (@placeholder[k] == @fine[i]))
}
