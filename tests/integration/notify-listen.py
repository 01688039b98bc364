#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# notify-listen.py - test helper: a stand-in for systemd's notification
# socket. usage: notify-listen.py SOCKET LOG [PATH...]
# Binds a unix datagram socket at SOCKET and appends each assignment it
# receives to LOG as "pid=SENDER ASSIGNMENT"; on READY=1 it also checks,
# at that very moment, whether every PATH exists ("ok:PATH" or
# "missing:PATH"), i.e. whether the sender was really ready.
import os
import socket
import struct
import sys

sock_path, log_path, paths = sys.argv[1], sys.argv[2], sys.argv[3:]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
s.bind(sock_path)
with open(log_path, "a", buffering=1) as log:
    log.write("listening\n")
    while True:
        data, anc, _, _ = s.recvmsg(4096, socket.CMSG_SPACE(12))
        pid = 0
        for level, kind, cdata in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid = struct.unpack("iII", cdata[:12])[0]
        for line in data.decode(errors="replace").split("\n"):
            if not line:
                continue
            extra = ""
            if line == "READY=1":
                extra = "".join(
                    (" ok:" if os.path.exists(p) else " missing:") + p for p in paths)
            log.write(f"pid={pid} {line}{extra}\n")
