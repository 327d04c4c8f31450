#!/usr/bin/python3
"""The release binary carries the compiler and linker hardening a daemon on
the network edge should have: PIE, full RELRO (BIND_NOW), stack protector,
fortified libc calls, no executable stack.  Read from the ELF itself."""
import os
import subprocess

import msatest as t

if os.environ.get("MSATEST_SANITIZER"):
    t.skip_all("hardening is checked on the release binary, not the ASan build")


def readelf(*args):
    r = subprocess.run(["readelf", "-W"] + list(args) + [t.MSA],
                       capture_output=True, text=True, timeout=30)
    return r.stdout


header = readelf("-h")
t.like(header, r"Type:\s+DYN", "the binary is position independent (PIE)")

program = readelf("-l")
t.like(program, r"GNU_RELRO", "a RELRO segment exists")
stack = [line for line in program.splitlines() if "GNU_STACK" in line]
t.ok(stack and " RWE " not in stack[0] and stack[0].split()[-2] == "RW",
     "the stack is not executable (GNU_STACK is RW)")

dynamic = readelf("-d")
t.like(dynamic, r"\(FLAGS\)\s+BIND_NOW|\(BIND_NOW\)",
       "all symbols are bound at start-up (full RELRO)")
t.like(dynamic, r"\(FLAGS_1\)\s+Flags:.*NOW.*PIE|\(FLAGS_1\)\s+Flags:.*PIE",
       "the dynamic section marks the executable PIE")
t.unlike(dynamic, r"\(TEXTREL\)", "no text relocations")

symbols = readelf("--dyn-syms")
t.like(symbols, r"__stack_chk_fail", "stack protector checks are compiled in")
t.like(symbols, r"__\w+_chk@", "fortified libc calls (_FORTIFY_SOURCE) are used")
t.unlike(symbols, r"\b(strcpy|strcat|sprintf|gets)@",
         "no unbounded strcpy/strcat/sprintf/gets is linked")

t.done_testing()
