rule secret_aws_access_key
{
    meta:
        id = "secret.aws-access-key"
        description = "An AWS access key id (AKIA/ASIA) with its 40-character secret access key nearby"
        severity = "high"
        confidence = "medium"
        category = "secret"
        attack = "T1552.001"
        scope = "file"
    strings:
        $id = /\b(AKIA|ASIA)[A-Z0-9]{16}\b/
        $secret = /(secret_access_key|secretaccesskey|secret_key|aws_secret)["']?\s*[:=]\s*["']?[A-Za-z0-9\/+]{40}([^A-Za-z0-9\/+]|$)/ nocase
        // the console's credentials.csv and "id:secret" pairs carry no label
        $pair = /\b(AKIA|ASIA)[A-Z0-9]{16}\s*[,:;|]\s*[A-Za-z0-9\/+]{40}([^A-Za-z0-9\/+]|$)/
        // AWS's published documentation keys are everywhere in SDKs and docs
        $example_id = "AKIAIOSFODNN7EXAMPLE"
        $example_secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    condition:
        for any i in (1..#pair): (
            not (for any k in (1..#example_id): (@example_id[k] == @pair[i])) and
            not (for any m in (1..#example_secret): (@example_secret[m] > @pair[i] and @example_secret[m] < @pair[i] + !pair[i]))
        ) or
        for any i in (1..#id): (
            not (for any k in (1..#example_id): (@example_id[k] == @id[i])) and
            for any j in (1..#secret): (
                @secret[j] > @id[i] - 400 and @secret[j] < @id[i] + 400 and
                not (for any m in (1..#example_secret): (@example_secret[m] > @secret[j] and @example_secret[m] < @secret[j] + !secret[j]))
            )
        )
}
