#!/usr/bin/env python3
"""Writes the hostile layer corpus next to this script. Each file is a layer a malicious base image could carry;
expected.txt says whether applying it must fail ("error") or succeed while staying inside the target ("confined").
Re-run to regenerate; the outputs are committed so the tests do not depend on Python."""
import gzip, io, os, tarfile

HERE = os.path.dirname(os.path.abspath(__file__))
expected = []


def tar_bytes(members, fmt=tarfile.GNU_FORMAT):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as t:
        for m, data in members:
            m.mtime = 0
            t.addfile(m, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def f(name, data=b"x"):
    m = tarfile.TarInfo(name)
    m.size = len(data)
    return (m, data)


def link(name, target, kind=tarfile.SYMTYPE):
    m = tarfile.TarInfo(name)
    m.type = kind
    m.linkname = target
    return (m, None)


def write(name, data, outcome):
    with open(os.path.join(HERE, name), "wb") as out:
        out.write(data)
    expected.append(f"{name} {outcome}")


write("traversal.tar", tar_bytes([f("../../../kiln-hostile-escape")]), "error")
write("traversal-inner.tar", tar_bytes([f("a/../../kiln-hostile-escape")]), "error")
write("absolute.tar", tar_bytes([f("/kiln-hostile-escape")]), "error")
write("hardlink-out.tar", tar_bytes([link("h", "../../../../etc/passwd", tarfile.LNKTYPE)]), "error")
write("hardlink-absolute.tar", tar_bytes([link("h", "/etc/passwd", tarfile.LNKTYPE)]), "error")
# A symlink to the host's /tmp, then a file through it: must land in the target's own /tmp.
write("symlink-parent.tar", tar_bytes([link("escape", "/tmp"), f("escape/kiln-hostile-escape")]), "confined")
write("symlink-relative-parent.tar",
      tar_bytes([link("escape", "../../../../../../../../tmp"), f("escape/kiln-hostile-escape")]), "confined")
# A hardlink through a symlink to /etc: resolved inside the target, where there is no passwd.
write("hardlink-via-symlink.tar", tar_bytes([link("l", "/etc"), link("h", "l/passwd", tarfile.LNKTYPE)]), "error")
# Whiteouts that name the parent or escape.
write("whiteout-dotdot.tar", tar_bytes([f("a/.wh..."), f("b/.wh..")]), "error")
write("whiteout-traversal.tar", tar_bytes([f("../.wh.kiln-hostile-escape")]), "error")
# A PAX header that claims a gigantic size with nothing behind it.
pax = bytearray(tar_bytes([f("ok")], tarfile.PAX_FORMAT))
hdr = tarfile.TarInfo("././@PaxHeader")
hdr.type = tarfile.XHDTYPE
hdr.size = 1 << 30
write("huge-pax-header.tar", hdr.tobuf(tarfile.USTAR_FORMAT) + b"30 path=" + b"a" * 400, "error")
# A long name whose GNU header claims more than it holds.
long = tarfile.TarInfo("././@LongLink")
long.type = tarfile.GNUTYPE_LONGNAME
long.size = (1 << 33) - 1
write("huge-gnu-longname.tar", long.tobuf(tarfile.GNU_FORMAT) + b"b" * 512, "error")
ok = tar_bytes([f("file", b"y" * 4096)])
write("truncated.tar.gz", gzip.compress(ok, mtime=0)[:60], "error")
write("truncated.tar", ok[:700], "error")
bad = bytearray(ok)
bad[148:156] = b"0000000\0"
write("bad-checksum.tar", bytes(bad), "error")
write("not-a-tar.bin", b"\x00\x01garbage" * 100, "error")

with open(os.path.join(HERE, "expected.txt"), "w") as out:
    out.write("# file outcome — written by make.py\n" + "\n".join(expected) + "\n")
