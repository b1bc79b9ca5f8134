curl -s -H "Authorization: Bearer xoxb-715926532599-6725647874989-3UwKLnPVGfgp9C4V1f39d9cW" https://slack.com/api/chat.postMessage -d channel=C1 -d text=done
