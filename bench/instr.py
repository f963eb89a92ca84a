# SPDX-License-Identifier: GPL-2.0-or-later
"""Instructions per handshake pair, per library: the C floor vs quichsd, under callgrind.

``python -m bench.instr`` (needs valgrind; about 3 minutes). Both programs run N1 and
N2 full handshakes (plus one warm-up) under ``valgrind --tool=callgrind --cache-sim=yes
--branch-sim=yes``; the difference divided by N2 - N1 is the cost of one handshake pair
(client + server) without start-up. Printed per shared object: instructions (Ir), L1
instruction and data read misses (I1mr, D1mr) and mispredicted branches (Bcm + Bim), as
valgrind's simple cache model counts them. Instruction counts are exact and do not depend
on host load; the miss counts show how the interpreter running between GnuTLS calls
disturbs the caches and predictors GnuTLS relies on.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

from . import floor
from .fixture import load_daemon, priority_strings, write_pki

N1, N2 = 10, 30
EVENTS = ("Ir", "I1mr", "D1mr", "Bcm", "Bim")
_PKI_FILES = {"cert": "server.pem", "key": "server.key", "ca": "ca.pem"}
LIBS = ("libgnutls", "libtasn1", "libnettle", "libhogweed", "libgmp", "libc", "libpython3.11")


def _child(n: int, pki_dir: str) -> None:
    """n + 1 full handshakes through run_handshake() on a memory pair (quichsd's side)."""
    from quichsd.driver import run_handshake

    d = load_daemon({k: Path(pki_dir) / f for k, f in _PKI_FILES.items()})

    async def main() -> None:
        for _ in range(n + 1):
            c, s = d.pair()
            a, b = await asyncio.gather(
                run_handshake(c, d.client_req), run_handshake(s, d.server_req)
            )
            if not (a.ok and b.ok and c.stored_ticket):
                raise SystemExit(f"handshake failed: {a.error} / {b.error}")
            c.close()
            s.close()

    asyncio.run(main())


def parse(path: Path) -> dict[str, list[int]]:
    """Self cost per shared object from a callgrind output file (name compression aware)."""
    names: dict[str, dict[str, str]] = {"ob": {}, "fn": {}}
    events: list[str] = []
    out: dict[str, list[int]] = defaultdict(lambda: [0] * len(events))
    ob = "?"
    skip = False
    for line in path.read_text().splitlines():
        if not line:
            continue
        if line[0].isdigit() or line[0] in "+-*":
            if skip:  # the inclusive cost line after calls= belongs to the callee
                skip = False
                continue
            row = out[ob]
            for i, x in enumerate(line.split()[1:]):
                row[i] += int(x)
            continue
        if line.startswith("events:"):
            events = line.split()[1:]
            continue
        key, _, val = line.partition("=")
        if key in ("ob", "cob"):
            m = re.match(r"\((\d+)\)(?:\s+(.*))?", val)
            name = val
            if m:
                if m.group(2) is not None:
                    names["ob"][m.group(1)] = m.group(2)
                name = names["ob"].get(m.group(1), "?")
            if key == "ob":
                ob = re.sub(r"\.so.*", "", name.rsplit("/", 1)[-1])
        elif key == "calls":
            skip = True
    return {k: [v[events.index(e)] for e in EVENTS] for k, v in out.items()}


def _callgrind(cmd: list[str], out: Path) -> dict[str, list[int]]:
    vg = ["valgrind", "--tool=callgrind", "--cache-sim=yes", "--branch-sim=yes"]
    subprocess.run(
        [*vg, f"--callgrind-out-file={out}", *cmd],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return parse(out)


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        _child(int(sys.argv[2]), sys.argv[3])
        return
    binary = floor.build()
    tmp = Path(tempfile.mkdtemp(prefix="quichsd-instr-"))
    pki = write_pki(tmp / "pki")
    prio = priority_strings(load_daemon(pki).policy)
    fl_args = [str(pki["cert"]), str(pki["key"]), str(pki["ca"]), prio["server"], prio["client"]]
    per: dict[str, dict[str, list[float]]] = {}
    for who in ("floor", "quichsd"):
        runs = []
        for n in (N1, N2):
            if who == "floor":
                cmd = [str(binary), *fl_args, "full", str(n), "smb"]
            else:
                cmd = [sys.executable, "-m", "bench.instr", "--child", str(n), str(tmp / "pki")]
            print(f"callgrind: {who} N={n} ...", flush=True)
            runs.append(_callgrind(cmd, tmp / f"{who}.{n}.out"))
        a, b = runs
        per[who] = {
            lib: [(y - x) / (N2 - N1) for x, y in zip(a.get(lib, [0] * 5), b[lib], strict=True)]
            for lib in b
        }
    print("\nper handshake pair (client + server), thousands; floor / quichsd / ratio")
    print(f"{'object':16}" + "".join(f"{e:>25}" for e in ("Ir", "I1mr", "D1mr", "Bcm+Bim")))
    for lib in LIBS:
        f, q = per["floor"].get(lib, [0.0] * 5), per["quichsd"].get(lib, [0.0] * 5)
        f = [f[0], f[1], f[2], f[3] + f[4]]
        q = [q[0], q[1], q[2], q[3] + q[4]]
        cells = "".join(
            f"{a / 1e3:9.1f} {b / 1e3:8.1f} {b / a if a else float('nan'):5.2f}x"
            for a, b in zip(f, q, strict=True)
        )
        print(f"{lib:16}{cells}")
    print(f"(callgrind output files in {tmp})")


if __name__ == "__main__":
    main()
