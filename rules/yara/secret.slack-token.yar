rule secret_slack_token
{
    meta:
        id = "secret.slack-token"
        description = "A Slack API token (xoxb-, xoxp-, xoxa-, xoxr-, xoxs-) or incoming-webhook URL"
        severity = "high"
        confidence = "medium"
        category = "secret"
        attack = "T1552.001"
        scope = "file"
    strings:
        // real tokens start with numeric team/user ids, so "xoxb-your-token-here" placeholders do not match
        // one string per token kind: a literal head per string lets the engine skip files cheaply
        $token_b = /\bxoxb-[0-9]{6,}-[0-9A-Za-z]{6,}(-[0-9A-Za-z]{6,}){0,2}\b/
        $token_p = /\bxoxp-[0-9]{6,}-[0-9A-Za-z]{6,}(-[0-9A-Za-z]{6,}){0,2}\b/
        $token_a = /\bxoxa-[0-9]{6,}-[0-9A-Za-z]{6,}(-[0-9A-Za-z]{6,}){0,2}\b/
        $token_r = /\bxoxr-[0-9]{6,}-[0-9A-Za-z]{6,}(-[0-9A-Za-z]{6,}){0,2}\b/
        $token_s = /\bxoxs-[0-9]{6,}-[0-9A-Za-z]{6,}(-[0-9A-Za-z]{6,}){0,2}\b/
        $webhook = /hooks\.slack\.com\/services\/T[A-Z0-9]{8,}\/B[A-Z0-9]{8,}\/[A-Za-z0-9]{24}\b/
    condition:
        any of them
}
