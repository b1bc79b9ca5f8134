rule xmrig_strings {
  strings:
    $a = "XMRig"
    $b = "randomx"
    $c = "donate-level"
    $d = "stratum+tcp"
  condition: 3 of them
}
