rule secret_npm_token
{
    meta:
        id = "secret.npm-token"
        description = "An npm access token (npm_…) or a literal _authToken in an .npmrc"
        severity = "high"
        confidence = "medium"
        category = "secret"
        attack = "T1552.001"
        scope = "file"
    strings:
        $token = /\bnpm_[A-Za-z0-9]{36}\b/
        // ${NPM_TOKEN} references are the right way to do it and do not match
        $npmrc = /:_authToken\s*=\s*[A-Za-z0-9\-_]{30,}/
    condition:
        any of them
}
