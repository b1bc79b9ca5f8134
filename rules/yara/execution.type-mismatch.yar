rule execution_type_mismatch
{
    meta:
        id = "execution.type-mismatch"
        description = "A file named like an image or media file whose content is a script or an ELF executable (payload in disguise)"
        severity = "high"
        confidence = "high"
        category = "backdoor"
        attack = "T1036.008"
        scope = "file"
        path_include = "*.jpg,*.jpeg,*.png,*.gif,*.ico,*.bmp,*.webp,*.mp3,*.mp4,*.JPG,*.JPEG,*.PNG,*.GIF,*.ICO,*.BMP,*.WEBP"
    strings:
        // the interpreter line must be the very first bytes, as the kernel and `sh file` read it
        $shebang = /^#![ \t]*\/[A-Za-z0-9_\/.\-]{2,60}/
        // shebang-less scripts (logo3.jpg is piped into bash): shell idioms near the top of the file
        $sh1 = /(^|\n)[ \t]*(pkill|killall)\s/
        $sh2 = /\b(curl|wget)\s+[^\n]{0,80}(https?:\/\/|-O|-o\s)/
        $sh3 = /\bchmod\s+(\+x|[0-7]?7[0-7]{2})\s/
        $sh4 = /\bnohup\s/
        $sh5 = /\bps\s+-?(aux|ef|auxf|axf)\b/
        $sh6 = /(^|\n)[ \t]*(if|for|while)\s[^\n]{0,80};\s*(then|do)\b/
    condition:
        uint32(0) == 0x464c457f or $shebang or
        (
            // a real image or media header means the file is what its name says
            not (uint16(0) == 0xd8ff or uint32(0) == 0x474e5089 or uint32(0) == 0x38464947 or uint16(0) == 0x4d42 or
                 uint32(0) == 0x00010000 or uint32(0) == 0x46464952 or uint32(4) == 0x70797466 or
                 (uint32(0) & 0x00ffffff) == 0x00334449 or uint16(0) == 0xfbff) and
            3 of ($sh*) in (0..4096)
        )
}
