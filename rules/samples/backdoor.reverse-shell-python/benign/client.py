import os, socket, subprocess
def check(host: str, port: int) -> bool:
    with socket.create_connection((host, port), timeout=2):
        return True
def run(cmd):
    return subprocess.run(cmd, check=True)
os.dup2(os.open(os.devnull, os.O_RDWR), 0)
