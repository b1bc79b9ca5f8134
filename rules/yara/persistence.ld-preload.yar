rule persistence_ld_preload
{
    meta:
        id = "persistence.ld-preload"
        description = "/etc/ld.so.preload names a library loaded into every process (rootkits, process hiders)"
        severity = "high"
        confidence = "medium"
        category = "persistence"
        attack = "T1574.006"
        scope = "file"
        path_include = "/etc/ld.so.preload"
    strings:
        $lib = /(^|\n)\s*\/[^\s#]+\.so(\.[0-9]+)*/
    condition:
        $lib
}
