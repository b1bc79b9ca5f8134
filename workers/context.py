"""Where a file sits in an image: what runs it (entrypoint, cron, units, profiles and the scripts they call), or docs.

The same string means different things in different places: ``bash -i >& /dev/tcp/…`` in the bash man page is
documentation, in a crontab it is a backdoor. This module answers "does anything run this file, and how?" from
the merged filesystem and the image config, following the scripts that the entrypoint and the autostart files
reference (bounded in depth and breadth, never outside the image).
"""

from __future__ import annotations

import fnmatch
import re
import shlex
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from workers.layerfs import FsNode, MergedFilesystem
from workers.layerscan import script_references
from workers.oci import ImageConfig
from workers.unpack import EntryKind

DEFAULT_PATH = ("usr/local/sbin", "usr/local/bin", "usr/sbin", "usr/bin", "sbin", "bin")
MAX_DEPTH = 6
MAX_NODES = 2000

# Files that a system runs by itself: (kind, glob over the root-relative path).
AUTOSTART_GLOBS: tuple[tuple[str, str], ...] = (
    ("cron", "etc/crontab"),
    ("cron", "etc/cron.d/*"),
    ("cron", "etc/cron.hourly/*"),
    ("cron", "etc/cron.daily/*"),
    ("cron", "etc/cron.weekly/*"),
    ("cron", "etc/cron.monthly/*"),
    ("cron", "etc/crontabs/*"),
    ("cron", "var/spool/cron/*"),
    ("cron", "var/spool/cron/crontabs/*"),
    ("cron", "var/spool/cron/tabs/*"),
    ("service", "etc/systemd/system/*"),
    ("service", "etc/systemd/system/*/*"),
    ("service", "lib/systemd/system/*"),
    ("service", "usr/lib/systemd/system/*"),
    ("service", "etc/init.d/*"),
    ("service", "etc/rc.local"),
    ("service", "etc/rc.d/rc.local"),
    ("service", "etc/inittab"),
    ("service", "etc/supervisord.conf"),
    ("service", "etc/supervisor/conf.d/*"),
    ("service", "etc/services.d/*/run"),
    ("service", "etc/s6-overlay/s6-rc.d/*/run"),
    ("profile", "etc/profile"),
    ("profile", "etc/profile.d/*"),
    ("profile", "etc/bash.bashrc"),
    ("profile", "etc/zsh/zshrc"),
    ("profile", "root/.bashrc"),
    ("profile", "root/.profile"),
    ("profile", "root/.bash_profile"),
    ("profile", "root/.bash_login"),
    ("profile", "root/.bash_aliases"),
    ("profile", "root/.zshrc"),
    ("profile", "home/*/.bashrc"),
    ("profile", "home/*/.profile"),
    ("profile", "home/*/.bash_profile"),
    ("profile", "home/*/.bash_aliases"),
    ("preload", "etc/ld.so.preload"),
    ("ssh", "root/.ssh/authorized_keys*"),
    ("ssh", "home/*/.ssh/authorized_keys*"),
)
_AUTOSTART_EXACT = {glob: kind for kind, glob in AUTOSTART_GLOBS if "*" not in glob}
# '*' stays within one path component, as in a shell.
_AUTOSTART_PATTERNS = [
    (kind, re.compile(fnmatch.translate(glob).replace(".*", "[^/]*"))) for kind, glob in AUTOSTART_GLOBS if "*" in glob
]
# The literal head of every glob: one C-level startswith() rules out most paths before any regex runs.
_AUTOSTART_PREFIXES = tuple(sorted({glob.split("*", 1)[0] for _, glob in AUTOSTART_GLOBS}))

_DOC_PREFIXES = ("usr/share/doc/", "usr/share/man/", "usr/share/info/", "usr/share/help/", "usr/share/gtk-doc/")
_DOC_SUFFIXES = (".md", ".markdown", ".rst", ".txt", ".adoc", ".html", ".htm", ".pdf", ".tex", ".pod", ".1", ".8")
_DATA_DIRS = frozenset(
    {"test", "tests", "testdata", "testing", "fixtures", "examples", "example", "samples", "doc", "docs"}
)
_SHELL_SEPARATORS = re.compile(r"[;&|()`\n]+|\$\(")
_INTERPRETERS = re.compile(r"^(?:ba|da|z|k|a)?sh$|^python[0-9.]*$|^perl[0-9.]*$|^ruby[0-9.]*$|^node(js)?$|^php[0-9.]*$")


def autostart_kind(path: str) -> str | None:
    """'cron', 'service', 'profile', 'preload' or 'ssh' for files a system runs or reads by itself; else None."""
    if not path.startswith(_AUTOSTART_PREFIXES):
        return None  # the hot path: most files of an image are nowhere near an autostart location
    kind = _AUTOSTART_EXACT.get(path)
    if kind is not None:
        return kind
    for kind, pattern in _AUTOSTART_PATTERNS:
        if pattern.match(path):
            return kind
    return None


def is_autostart(path: str) -> bool:
    """Shorthand used by the layer scan to decide which non-script files to read references from."""
    return autostart_kind(path) is not None


def is_documentation(path: str) -> bool:
    """Documentation, man pages and test/example data: text that nothing in the image is meant to run."""
    if path.startswith(_DOC_PREFIXES) or path.lower().endswith(_DOC_SUFFIXES):
        return True
    return any(part in _DATA_DIRS for part in path.split("/")[:-1])


@dataclass(frozen=True)
class ExecutionContext:
    """The files something in the image runs, each with the chain that runs it."""

    executed: Mapping[str, str]  # root-relative path → why, e.g. "entrypoint → /start.sh"

    def why(self, path: str) -> str | None:
        """How ``path`` gets run, or None when nothing found runs it."""
        return self.executed.get(path)


def _env_path(config: ImageConfig) -> tuple[str, ...]:
    for item in config.env:
        name, _, value = item.partition("=")
        if name == "PATH" and value:
            return tuple(p.strip("/") for p in value.split(":") if p.strip("/"))
    return DEFAULT_PATH


def _command_words(argv: Iterable[str]) -> list[tuple[str, bool]]:
    """(word, starts a command) for an exec-form command, opening ``sh -c "…"`` strings into their commands."""
    words: list[tuple[str, bool]] = []
    for arg in argv:
        if not any(c in arg for c in " ;&|\n"):
            words.append((arg, not words))
            continue
        for segment in _SHELL_SEPARATORS.split(arg):
            try:
                parts = shlex.split(segment, comments=False, posix=True)
            except ValueError:
                parts = segment.split()
            words.extend((part, i == 0) for i, part in enumerate(parts))
    return words


class _Resolver:
    """Turns command words and script references into final-filesystem paths of regular files."""

    def __init__(self, fs: MergedFilesystem, search_path: tuple[str, ...], workdir: str) -> None:
        self.fs = fs
        self.search_path = search_path
        self.workdir = workdir

    def _file(self, path: str) -> FsNode | None:
        node = self.fs.resolve(path)
        return node if node is not None and node.kind is EntryKind.FILE else None

    def resolve(self, word: str, base_dir: str, *, bare_on_path: bool) -> str | None:
        word = word.strip().strip("'\"")
        if not word or len(word) > 512 or word.startswith("-") or "$" in word:
            return None
        if word.startswith("/"):
            node = self._file(word.lstrip("/"))
            return node.path if node else None
        if "/" in word or word.endswith((".sh", ".py", ".pl", ".rb", ".js", ".bash")):
            for base in (base_dir, self.workdir):
                joined = MergedFilesystem.join_link(f"{base}/x" if base else "x", word)
                node = self._file(joined)
                if node:
                    return node.path
            return None
        if bare_on_path:
            for directory in self.search_path:
                node = self._file(f"{directory}/{word}")
                if node:
                    return node.path
        return None


def execution_context(
    fs: MergedFilesystem,
    config: ImageConfig,
    refs_of: Callable[[str], tuple[str, ...] | None],
    *,
    skip_root: Callable[[str], bool] = lambda _path: False,
) -> ExecutionContext:
    """Everything the entrypoint/cmd and the autostart files run, transitively through script references.

    ``refs_of(path)`` gives the references recorded for a script (None for files that are not scripts);
    ``skip_root(path)`` leaves out autostart files that are verified package content (their references are
    the distribution's own).
    """
    workdir = (config.working_dir or "").strip("/")
    resolver = _Resolver(fs, _env_path(config), workdir)
    executed: dict[str, str] = {}
    queue: deque[tuple[str, str, int]] = deque()

    def add(path: str | None, why: str, depth: int) -> None:
        if path and path not in executed and len(executed) < MAX_NODES:
            executed[path] = why
            queue.append((path, why, depth))

    words = _command_words([*config.entrypoint, *config.cmd])
    for position, (word, starts_command) in enumerate(words):
        # The first word of each command is looked up on PATH; later words only count as files.
        after_interpreter = position > 0 and bool(_INTERPRETERS.match(words[position - 1][0].rsplit("/", 1)[-1]))
        add(resolver.resolve(word, workdir, bare_on_path=starts_command or after_interpreter), "entrypoint", 0)
    for command in (config.entrypoint, config.cmd):
        for text in command:
            for ref in script_references(text.encode()):
                add(resolver.resolve(ref, workdir, bare_on_path=False), "entrypoint", 0)

    for node in fs:
        if node.kind is EntryKind.FILE and not skip_root(node.path):
            kind = autostart_kind(node.path)
            if kind is not None:
                add(node.path, f"{kind} file /{node.path}", 0)

    while queue:
        path, why, depth = queue.popleft()
        if depth >= MAX_DEPTH:
            continue
        refs = refs_of(path)
        if not refs:
            continue
        base_dir = path.rpartition("/")[0]
        for ref in refs:
            target = resolver.resolve(ref, base_dir, bare_on_path=False)
            if target and target != path:
                add(target, f"{why} → /{path}" if depth or why == "entrypoint" else f"{why}", depth + 1)
    return ExecutionContext(executed=executed)
