#!/usr/bin/python3
"""Write a frame stream to stdout one frame at a time, DELAY seconds apart.

usage: trickle.py FILE DELAY [--hold] [--pidfile F]
  --hold     leave the last frame (the end frame) off and wait (at most 60 s)
  --pidfile  write this process's id to F first (a shell's $! may name a
             subshell around it)
"""
import os
import sys
import time

import msgpack


def main(argv):
    raw = open(argv[0], "rb").read()
    delay, hold = float(argv[1]), "--hold" in argv
    if "--pidfile" in argv:
        with open(argv[argv.index("--pidfile") + 1], "w") as f:
            f.write(f"{os.getpid()}\n")
    up = msgpack.Unpacker(raw=False)
    up.feed(raw)
    bounds, pos = [], 0
    for _ in up:
        bounds.append((pos, up.tell()))
        pos = up.tell()
    if hold:
        bounds = bounds[:-1]
    out = sys.stdout.buffer
    for a, b in bounds:
        out.write(raw[a:b])
        out.flush()
        time.sleep(delay)
    if hold:
        time.sleep(60)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except (BrokenPipeError, KeyboardInterrupt):
        sys.exit(0)
