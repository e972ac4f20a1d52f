#!/usr/bin/env python3
"""Build mydocker's offline test images, deterministically, as OCI image layouts.

Usage: build.py OUTDIR [--only NAME[,NAME...]]

Writes OUTDIR/<name>/ (oci-layout, index.json, blobs/sha256/...) per image and
OUTDIR/images.json describing every manifest, config (image ID) and layer.
Python 3 stdlib only. Same inputs (this script, the busybox binary, zstd) give
byte-identical blobs, so digests are stable across runs and machines with the
same tool versions. A stamp lets a re-run with unchanged inputs return at once.
"""
import gzip
import hashlib
import io
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tarfile

EPOCH = 1767225600  # 2026-01-01T00:00:00Z: fixed mtime for every tar entry
CREATED = "2026-01-01T00:00:00Z"
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
BUSYBOX = os.environ.get("MYDOCKER_BUSYBOX", "/bin/busybox")

# Media types
D_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
D_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
D_CONFIG = "application/vnd.docker.container.image.v1+json"
D_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
O_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
O_INDEX = "application/vnd.oci.image.index.v1+json"
O_CONFIG = "application/vnd.oci.image.config.v1+json"
O_LAYER_GZ = "application/vnd.oci.image.layer.v1.tar+gzip"
O_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
DOCKER_TYPES = {"manifest": D_MANIFEST, "index": D_LIST, "config": D_CONFIG, "layer": D_LAYER}
OCI_TYPES = {"manifest": O_MANIFEST, "index": O_INDEX, "config": O_CONFIG, "layer": O_LAYER_GZ}

ALL_IMAGES = ["busybox", "busybox-oci", "busybox-zstd", "layers", "multiarch",
              "multiarch-docker", "bench100", "evil-dotdot", "evil-symlink", "evil-hardlink",
              "volume"]


def log(msg):
    print("build.py: " + msg, file=sys.stderr, flush=True)


def go_arch(machine=None):
    m = (machine or platform.machine()).lower()
    return {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(m, m)


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canon(obj):
    # Compact, key-sorted JSON: stable bytes => stable digests.
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


# ---------------------------------------------------------------- layers

class Layer:
    """A layer tar built from explicit entries (no filesystem walk, so fully deterministic)."""

    def __init__(self, compress="gzip", level=6, sort=True):
        self.entries = []  # (TarInfo, data or None)
        self.compress = compress
        self.level = level
        self.sort = sort

    def _add(self, name, type_, mode, uid=0, gid=0, data=None, linkname=""):
        ti = tarfile.TarInfo(name)
        ti.type = type_
        ti.mode = mode
        ti.uid, ti.gid = uid, gid
        ti.uname = ti.gname = ""  # numeric ids only: extractors must not remap via host passwd
        ti.mtime = EPOCH
        ti.linkname = linkname
        ti.size = len(data) if data is not None else 0
        self.entries.append((ti, data))
        return self

    def dir(self, name, mode=0o755, uid=0, gid=0):
        return self._add(name, tarfile.DIRTYPE, mode, uid, gid)

    def file(self, name, data, mode=0o644, uid=0, gid=0):
        if isinstance(data, str):
            data = data.encode()
        return self._add(name, tarfile.REGTYPE, mode, uid, gid, data=data)

    def symlink(self, name, target):
        return self._add(name, tarfile.SYMTYPE, 0o777, linkname=target)

    def hardlink(self, name, target):
        return self._add(name, tarfile.LNKTYPE, 0o644, linkname=target)

    def tar_bytes(self):
        entries = self.entries
        if self.sort:
            # Sorted by name, but hard links last so their targets already exist on extraction.
            entries = sorted(entries, key=lambda e: (e[0].type == tarfile.LNKTYPE, e[0].name))
        buf = io.BytesIO()
        # PAX only emits extended headers when a field needs one; none of ours do.
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
            for ti, data in entries:
                tf.addfile(ti, io.BytesIO(data) if data is not None else None)
        return buf.getvalue()

    def build(self):
        """Return (uncompressed tar, compressed blob)."""
        raw = self.tar_bytes()
        if self.compress == "gzip":
            blob = gzip.compress(raw, compresslevel=self.level, mtime=0)
        elif self.compress == "zstd":
            blob = subprocess.run(["zstd", "-q", "-c", "-%d" % self.level, "--no-progress"],
                                  input=raw, stdout=subprocess.PIPE, check=True).stdout
        else:
            raise ValueError(self.compress)
        return raw, blob


def elf_is_static(path):
    """True if the ELF has no PT_INTERP (a dynamic busybox would not run in a libc-less image)."""
    import struct
    with open(path, "rb") as f:
        h = f.read(64)
        if h[:4] != b"\x7fELF":
            return False
        is64, end = h[4] == 2, "<" if h[5] == 1 else ">"
        if is64:
            phoff, = struct.unpack(end + "Q", h[32:40])
            phentsize, phnum = struct.unpack(end + "HH", h[54:58])
        else:
            phoff, = struct.unpack(end + "I", h[28:32])
            phentsize, phnum = struct.unpack(end + "HH", h[42:46])
        for i in range(phnum):
            f.seek(phoff + i * phentsize)
            p_type, = struct.unpack(end + "I", f.read(4))
            if p_type == 3:  # PT_INTERP
                return False
    return True


def busybox_layer():
    with open(BUSYBOX, "rb") as f:
        bb = f.read()
    applets = subprocess.run([BUSYBOX, "--list"], stdout=subprocess.PIPE, check=True,
                             text=True).stdout.split()
    L = Layer(level=9)
    for d in ["bin", "dev", "etc", "home", "proc", "root", "sys", "usr", "usr/bin", "var"]:
        L.dir(d, 0o700 if d == "root" else 0o755)
    L.dir("tmp", 0o1777)
    L.file("bin/busybox", bb, 0o755)
    taken = {"busybox"}
    for a in applets:
        if a in taken or "/" in a:
            continue  # never shadow the binary itself (busybox --list includes "busybox")
        taken.add(a)
        L.symlink("bin/" + a, "busybox")
    L.file("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"
                         "app:x:1000:1000::/home/app:/bin/sh\n"
                         "nobody:x:65534:65534:nobody:/home:/bin/false\n")
    L.file("etc/group", "root:x:0:\napp:x:1000:\nnogroup:x:65534:\n")
    return L


def rand_bytes(seed, n):
    return random.Random(seed).randbytes(n)  # Mersenne Twister: stable across Python >= 3.9


# ---------------------------------------------------------------- OCI layout writer

class Layout:
    def __init__(self, root):
        self.root = root
        os.makedirs(os.path.join(root, "blobs", "sha256"), exist_ok=True)
        with open(os.path.join(root, "oci-layout"), "w") as f:
            f.write('{"imageLayoutVersion":"1.0.0"}')

    def blob(self, data, media_type):
        d = sha256(data)
        p = os.path.join(self.root, "blobs", "sha256", d.split(":")[1])
        if not os.path.exists(p):
            with open(p, "wb") as f:
                f.write(data)
        return {"mediaType": media_type, "digest": d, "size": len(data)}

    def finish(self, top_desc, tag="latest"):
        desc = dict(top_desc)
        desc["annotations"] = {"org.opencontainers.image.ref.name": tag}
        index = {"schemaVersion": 2, "mediaType": O_INDEX, "manifests": [desc]}
        with open(os.path.join(self.root, "index.json"), "wb") as f:
            f.write(canon(index))


class BuiltLayer:
    """A layer built once and reusable across images (same blob => shared digest)."""

    def __init__(self, layer, created_by, comment=None):
        self.raw, self.blob = layer.build()
        self.compress = layer.compress
        self.diff_id = sha256(self.raw)
        self.digest = sha256(self.blob)
        self.created_by = created_by.replace("{diff}", self.diff_id.split(":")[1])
        self.raw = None  # not needed any more: keep memory down for bench layers


def write_image(layout, types, arch, layers, cmd=("sh",), labels=None, extra_history=(),
                volumes=()):
    """Write config + manifest for `layers` (list of BuiltLayer); return (manifest desc, info).

    extra_history: list of (position_after_layer_index, created_by) for empty_layer entries.
    """
    history = []
    empties = {}
    for pos, text in extra_history:
        empties.setdefault(pos, []).append(text)
    for i, bl in enumerate(layers):
        history.append({"created": CREATED, "created_by": bl.created_by})
        for text in empties.get(i, []):
            history.append({"created": CREATED, "created_by": text, "empty_layer": True})
    cfg = {"Env": [PATH_ENV], "Cmd": list(cmd)}
    if labels:
        cfg["Labels"] = dict(labels)
    if volumes:
        cfg["Volumes"] = {v: {} for v in volumes}
    config = {
        "architecture": arch,
        "os": "linux",
        "created": CREATED,
        "config": cfg,
        "rootfs": {"type": "layers", "diff_ids": [bl.diff_id for bl in layers]},
        "history": history,
    }
    cdesc = layout.blob(canon(config), types["config"])
    ldescs = []
    for bl in layers:
        mt = types["layer"] if bl.compress == "gzip" else O_LAYER_ZSTD
        ldescs.append(layout.blob(bl.blob, mt))
    manifest = {"schemaVersion": 2, "mediaType": types["manifest"], "config": cdesc, "layers": ldescs}
    mdesc = layout.blob(canon(manifest), types["manifest"])
    info = {
        "mediaType": mdesc["mediaType"], "digest": mdesc["digest"], "size": mdesc["size"],
        "architecture": arch, "os": "linux",
        "config": cdesc["digest"],  # == the image ID docker shows
        "layers": [dict(l, diffId=bl.diff_id) for l, bl in zip(ldescs, layers)],
    }
    return mdesc, info


def write_index(layout, types, entries):
    """entries: list of (manifest desc, info). Returns (index desc, info)."""
    manifests = []
    for mdesc, info in entries:
        d = dict(mdesc)
        d["platform"] = {"architecture": info["architecture"], "os": info["os"]}
        manifests.append(d)
    index = {"schemaVersion": 2, "mediaType": types["index"], "manifests": manifests}
    idesc = layout.blob(canon(index), types["index"])
    info = {"mediaType": idesc["mediaType"], "digest": idesc["digest"], "size": idesc["size"],
            "manifests": [dict(info, platform=d["platform"]) for d, (_, info) in zip(manifests, entries)]}
    return idesc, info


# ---------------------------------------------------------------- the images

def build_all(out, only, arch, have_zstd):
    images = {}
    want = lambda n: only is None or n in only  # noqa: E731
    other_arch = "arm64" if arch == "amd64" else "amd64"
    nop = "/bin/sh -c #(nop) "
    cmd_sh = nop + ' CMD ["sh"]'

    base = BuiltLayer(busybox_layer(), nop + "ADD file:{diff} in / ")

    def simple(name, types, layers, labels=None, extra=(), volumes=()):
        lay = Layout(os.path.join(out, name))
        mdesc, info = write_image(lay, types, arch, layers, labels=labels, extra_history=extra,
                                  volumes=volumes)
        lay.finish(mdesc)
        images[name] = dict(info, layout=name)

    if want("busybox"):
        simple("busybox", DOCKER_TYPES, [base], extra=[(0, cmd_sh)])

    if want("volume"):
        # VOLUME /data over content: anonymous volumes and their first-use copy.
        seed = Layer().dir("data").file("data/seed.txt", "seeded\n")
        simple("volume", DOCKER_TYPES, [base, BuiltLayer(seed, nop + "ADD file:{diff} in /data ")],
               extra=[(1, nop + ' VOLUME [/data]'), (1, cmd_sh)], volumes=["/data"])

    if want("busybox-oci"):
        simple("busybox-oci", OCI_TYPES, [base],
               labels={"org.opencontainers.image.title": "busybox-oci"},
               extra=[(0, nop + " LABEL org.opencontainers.image.title=busybox-oci"), (0, cmd_sh)])

    if want("busybox-zstd"):
        if have_zstd:
            zl = Layer(compress="zstd", level=3)
            zl.entries = busybox_layer().entries
            simple("busybox-zstd", OCI_TYPES, [BuiltLayer(zl, nop + "ADD file:{diff} in / ")],
                   extra=[(0, cmd_sh)])
        else:
            log("WARNING: no zstd binary: skipping busybox-zstd")

    if want("layers"):
        l2 = (Layer().dir("data").dir("data/dir").dir("opq")
              .file("data/keep.txt", "keep\n")
              .file("data/remove.txt", "remove me\n")
              .file("data/dir/inner.txt", "inner\n")
              .file("opq/old1", "old1\n").file("opq/old2", "old2\n")
              .hardlink("data/hard", "data/keep.txt")
              .symlink("data/sym", "keep.txt")
              .file("data/suid", "#!/bin/sh\necho suid\n", mode=0o4755)
              .file("data/owned", "owned by app\n", uid=1000, gid=1000))
        # L3 is what a layer diff looks like after rm + rm -rf + replacing /opq's contents.
        l3 = (Layer().dir("data").dir("opq")
              .file("data/.wh.remove.txt", b"")
              .file("data/.wh.dir", b"")
              .file("opq/.wh..wh..opq", b"")
              .file("opq/new", "new\n"))
        l4 = Layer().dir("data").file("data/big.bin", rand_bytes(4242, 1 << 20))
        simple("layers", DOCKER_TYPES, [
            base,
            BuiltLayer(l2, nop + "ADD dir:{diff} in / "),
            BuiltLayer(l3, "/bin/sh -c rm /data/remove.txt && rm -rf /data/dir /opq/* "
                           "&& echo new > /opq/new"),
            BuiltLayer(l4, nop + "ADD file:{diff} in /data/big.bin "),
        ], labels={"test.layers": "yes"},
            extra=[(0, cmd_sh), (3, nop + " LABEL test.layers=yes"), (3, cmd_sh)])

    for name, types in (("multiarch", OCI_TYPES), ("multiarch-docker", DOCKER_TYPES)):
        if not want(name):
            continue
        lay = Layout(os.path.join(out, name))
        host_plat = BuiltLayer(Layer().dir("etc").file("etc/platform", arch + "\n"),
                               nop + "ADD file:{diff} in /etc/platform ")
        foreign = BuiltLayer(Layer().dir("etc").file("etc/platform", other_arch + "\n"),
                             nop + "ADD file:{diff} in /etc/platform ")
        host = write_image(lay, types, arch, [base, host_plat], extra_history=[(1, cmd_sh)])
        other = write_image(lay, types, other_arch, [foreign], extra_history=[(0, cmd_sh)])
        idesc, info = write_index(lay, types, [host, other])
        lay.finish(idesc)
        images[name] = dict(info, layout=name)

    if want("bench100"):
        # ~20 MB of incompressible bytes per layer; gzip -1 because it cannot shrink anyway.
        bench = []
        for n in range(1, 6):
            bl = Layer(level=1).dir("bench").file("bench/%d.bin" % n, rand_bytes(1000 + n, 20 * 1000 * 1000))
            bench.append(BuiltLayer(bl, nop + "ADD file:{diff} in /bench/%d.bin " % n))
        simple("bench100", DOCKER_TYPES, [base] + bench, extra=[(5, cmd_sh)])

    # Hostile layers: valid digests, so only the daemon's unpacker stands between them and the host.
    if want("evil-dotdot"):
        ev = Layer(sort=False).file("../../../../tmp/mydocker-evil-dotdot", "pwned by ..\n")
        simple("evil-dotdot", DOCKER_TYPES, [base, BuiltLayer(ev, nop + "ADD file:{diff} in / ")],
               extra=[(1, cmd_sh)])
    if want("evil-symlink"):
        ev = (Layer(sort=False).symlink("escape", "/tmp")
              .file("escape/mydocker-evil-symlink", "pwned via symlink\n"))
        simple("evil-symlink", DOCKER_TYPES, [base, BuiltLayer(ev, nop + "ADD file:{diff} in / ")],
               extra=[(1, cmd_sh)])
    if want("evil-hardlink"):
        ev = Layer(sort=False).hardlink("pw", "../../../etc/passwd")
        simple("evil-hardlink", DOCKER_TYPES, [base, BuiltLayer(ev, nop + "ADD file:{diff} in / ")],
               extra=[(1, cmd_sh)])
    return images


def input_hash(only, have_zstd):
    """Hash of everything that shapes the output: this script, busybox, zstd, arch, selection."""
    h = hashlib.sha256()
    with open(os.path.abspath(__file__), "rb") as f:
        h.update(f.read())
    with open(BUSYBOX, "rb") as f:
        h.update(f.read())
    if have_zstd:
        h.update(subprocess.run(["zstd", "--version"], stdout=subprocess.PIPE).stdout)
    h.update(repr((go_arch(), sorted(only) if only else None, sys.version_info[:2])).encode())
    return h.hexdigest()


def main(argv):
    args = list(argv)
    only = None
    if "--only" in args:
        i = args.index("--only")
        only = set(args[i + 1].split(","))
        del args[i:i + 2]
        unknown = only - set(ALL_IMAGES)
        if unknown:
            sys.exit("build.py: unknown image(s): %s" % ", ".join(sorted(unknown)))
    if len(args) != 1:
        sys.exit(__doc__.strip().splitlines()[2])
    out = os.path.abspath(args[0])
    if not elf_is_static(BUSYBOX):
        sys.exit("build.py: %s is not a static ELF (install busybox-static)" % BUSYBOX)
    have_zstd = shutil.which("zstd") is not None
    stamp = input_hash(only, have_zstd)
    stamp_path = os.path.join(out, ".stamp")
    if os.path.exists(stamp_path) and os.path.exists(os.path.join(out, "images.json")):
        with open(stamp_path) as f:
            if f.read().strip() == stamp:
                log("up to date: " + out)
                return
    if os.path.isdir(out) and os.listdir(out) and not os.path.exists(stamp_path):
        sys.exit("build.py: refusing to replace %s: not one of our outputs (no .stamp)" % out)

    # Build beside OUTDIR and swap in at the end, so a crash never leaves a half-valid cache.
    tmp = out + ".building"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    arch = go_arch()
    images = build_all(tmp, only, arch, have_zstd)
    with open(os.path.join(tmp, "images.json"), "w") as f:
        json.dump({"arch": arch, "created": CREATED, "images": images}, f, indent=2, sort_keys=True)
        f.write("\n")
    with open(os.path.join(tmp, ".stamp"), "w") as f:
        f.write(stamp + "\n")
    shutil.rmtree(out, ignore_errors=True)
    os.rename(tmp, out)
    log("built %d images in %s" % (len(images), out))


if __name__ == "__main__":
    main(sys.argv[1:])
