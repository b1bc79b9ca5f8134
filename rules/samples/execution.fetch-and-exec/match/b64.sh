echo ZWNobyBoZWxsbwo= | base64 -d | bash
