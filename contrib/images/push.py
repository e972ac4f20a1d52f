#!/usr/bin/env python3
"""Push an OCI image layout to a registry over plain HTTP (distribution v2 API).

Usage: push.py LAYOUT_DIR REGISTRY REPO:TAG [REPO:TAG...] [--user U --password P]

REGISTRY is host:port (e.g. 127.0.0.1:5000). Pushes what LAYOUT_DIR/index.json
points at (the entry annotated with TAG, or its only entry), following nested
indexes: blobs first, then child manifests by digest, then the top one by tag.
Uses http.client directly so HTTP(S)_PROXY variables can never reroute it.
Python 3 stdlib only.
"""
import base64
import http.client
import json
import os
import sys
import urllib.parse

INDEX_TYPES = {"application/vnd.oci.image.index.v1+json",
               "application/vnd.docker.distribution.manifest.list.v2+json"}
MANIFEST_TYPES = {"application/vnd.oci.image.manifest.v1+json",
                  "application/vnd.docker.distribution.manifest.v2+json"}


def log(msg):
    print("push.py: " + msg, file=sys.stderr, flush=True)


class PushError(Exception):
    pass


class Registry:
    def __init__(self, hostport, user=None, password=None):
        host, _, port = hostport.rpartition(":")
        if not host or not port.isdigit():
            raise PushError("REGISTRY must be host:port, got %r" % hostport)
        self.host, self.port = host.strip("[]"), int(port)
        self.creds = (user, password) if user is not None else None
        self.auth = None  # Authorization header value, set after a Basic challenge

    def request(self, method, path, body=None, body_path=None, headers=None, ok=(200,)):
        """One HTTP request; on a 401 Basic challenge, retry once with credentials."""
        for attempt in (0, 1):
            hdrs = dict(headers or {})
            if self.auth:
                hdrs["Authorization"] = self.auth
            f = open(body_path, "rb") if body_path else None
            try:
                if f is not None:
                    hdrs["Content-Length"] = str(os.fstat(f.fileno()).st_size)
                elif body is not None:
                    hdrs["Content-Length"] = str(len(body))
                elif method in ("POST", "PUT"):
                    hdrs["Content-Length"] = "0"
                conn = http.client.HTTPConnection(self.host, self.port, timeout=300,
                                                  blocksize=1 << 20)
                try:
                    conn.request(method, path, body=f if f is not None else body, headers=hdrs)
                    resp = conn.getresponse()
                    data = resp.read()
                finally:
                    conn.close()
            finally:
                if f is not None:
                    f.close()
            if resp.status == 401 and attempt == 1:
                raise PushError("%s %s: credentials rejected (401)" % (method, path))
            if resp.status == 401:
                challenge = resp.getheader("WWW-Authenticate", "")
                if not challenge.lower().startswith("basic"):
                    raise PushError("%s %s: 401 with unsupported challenge %r"
                                    % (method, path, challenge))
                if not self.creds:
                    raise PushError("%s %s: registry wants Basic auth; pass --user/--password"
                                    % (method, path))
                token = base64.b64encode(("%s:%s" % self.creds).encode()).decode()
                self.auth = "Basic " + token
                continue
            if resp.status not in ok:
                raise PushError("%s %s: HTTP %d %s" % (method, path, resp.status,
                                                       data[:500].decode("utf-8", "replace")))
            return resp, data

    def blob_exists(self, repo, digest):
        resp, _ = self.request("HEAD", "/v2/%s/blobs/%s" % (repo, digest), ok=(200, 404))
        return resp.status == 200

    def upload_blob(self, repo, digest, path):
        # Monolithic upload: POST to open a session, then PUT the whole blob with ?digest=.
        resp, _ = self.request("POST", "/v2/%s/blobs/uploads/" % repo, ok=(202,))
        loc = resp.getheader("Location")
        if not loc:
            raise PushError("upload for %s: no Location header" % repo)
        parts = urllib.parse.urlsplit(loc)  # may be absolute; we always talk to our own host
        target = parts.path + ("?" + parts.query if parts.query else "")
        target += ("&" if parts.query else "?") + "digest=" + urllib.parse.quote(digest)
        self.request("PUT", target, body_path=path,
                     headers={"Content-Type": "application/octet-stream"}, ok=(201,))

    def put_manifest(self, repo, ref, media_type, data, digest):
        resp, _ = self.request("PUT", "/v2/%s/manifests/%s" % (repo, ref), body=data,
                               headers={"Content-Type": media_type}, ok=(201,))
        got = resp.getheader("Docker-Content-Digest")
        if got and got != digest:
            raise PushError("%s:%s: registry computed %s, expected %s" % (repo, ref, got, digest))


class Pusher:
    def __init__(self, layout, reg, repo):
        self.layout, self.reg, self.repo = layout, reg, repo
        self.done_blobs = set()
        self.uploaded = 0

    def blob_path(self, digest):
        algo, hexd = digest.split(":", 1)
        p = os.path.join(self.layout, "blobs", algo, hexd)
        if not os.path.exists(p):
            raise PushError("blob %s missing from layout %s" % (digest, self.layout))
        return p

    def push_blob(self, desc):
        d = desc["digest"]
        if d in self.done_blobs:
            return
        if not self.reg.blob_exists(self.repo, d):  # HEAD first: skip what is already there
            self.reg.upload_blob(self.repo, d, self.blob_path(d))
            self.uploaded += desc.get("size", 0)
        self.done_blobs.add(d)

    def push(self, desc, ref):
        """Push the manifest/index `desc` and everything below it; tag it as `ref`."""
        with open(self.blob_path(desc["digest"]), "rb") as f:
            data = f.read()
        doc = json.loads(data)
        mt = desc.get("mediaType") or doc.get("mediaType")
        if mt in INDEX_TYPES:
            for child in doc.get("manifests", []):
                self.push(child, child["digest"])  # children must exist before the index
        elif mt in MANIFEST_TYPES:
            self.push_blob(doc["config"])
            for layer in doc.get("layers", []):
                self.push_blob(layer)
        else:
            raise PushError("unsupported manifest media type %r" % mt)
        self.reg.put_manifest(self.repo, ref, mt, data, desc["digest"])


def pick(layout, tag):
    with open(os.path.join(layout, "index.json")) as f:
        entries = json.load(f).get("manifests", [])
    tagged = [e for e in entries
              if e.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag]
    if tagged:
        return tagged[0]
    if len(entries) == 1:
        return entries[0]
    raise PushError("%s/index.json: no entry for tag %r and not exactly one entry" % (layout, tag))


def main(argv):
    args, user, password = [], None, None
    it = iter(argv)
    for a in it:
        if a == "--user":
            user = next(it, None)
        elif a == "--password":
            password = next(it, None)
        else:
            args.append(a)
    if len(args) < 3 or (user is None) != (password is None):
        sys.exit(__doc__.strip().splitlines()[2])
    layout, registry, refs = args[0], args[1], args[2:]
    reg = Registry(registry, user, password)
    try:
        # Ping /v2/ first: settles auth before any request with a body.
        reg.request("GET", "/v2/", ok=(200,))
        for ref in refs:
            repo, sep, tag = ref.rpartition(":")
            if not sep or "/" in tag:
                repo, tag = ref, "latest"
            p = Pusher(layout, reg, repo)
            desc = pick(layout, tag)
            p.push(desc, tag)
            log("pushed %s/%s:%s (%s, %d bytes uploaded)"
                % (registry, repo, tag, desc["digest"][:19], p.uploaded))
    except (PushError, OSError, http.client.HTTPException) as e:
        sys.exit("push.py: error: %s" % e)


if __name__ == "__main__":
    main(sys.argv[1:])
