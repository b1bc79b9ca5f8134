"""A pty helper in the shape of the standard library's pty.spawn: a local child, no network."""
import os
import pty

def spawn(argv):
    pid, master_fd = pty.fork()
    if pid == pty.CHILD:
        os.execlp(argv[0], *argv)
    os.dup2(master_fd, 0)
    return os.waitpid(pid, 0)

pty.spawn("/bin/sh")
