#!/usr/bin/env python3
"""Writes drainit's multi-architecture image as one tar file, from static
binaries built beforehand (scripts/release.sh): what `FROM scratch` +
`COPY drainit /drainit` + the Dockerfile's runtime settings make, for every
architecture, without running (or emulating) a build.

    oci-image.py --version 0.1.0 --out drainit-0.1.0-image.tar \\
        amd64=drainit-0.1.0-x86_64 arm64=drainit-0.1.0-aarch64 arm/v7=...

The tar is both:
  - an OCI image layout (oci-layout, index.json, blobs/sha256/...) whose
    index lists one manifest per platform: push it as a multi-arch image
    with `skopeo copy --all oci-archive:FILE docker://REGISTRY/drainit:TAG`
    (or `regctl`, `crane`); and
  - a `docker load` archive (manifest.json): Docker loads every platform's
    image, tagged drainit:VERSION-<arch> (e.g. drainit:0.1.0-arm64), and
    the first platform given also as drainit:VERSION.

Layers are uncompressed tars with fixed owners and times, so the same
binaries give the same digests.
"""

import argparse
import hashlib
import io
import json
import os
import sys
import tarfile

# Platform names of the OCI image spec (GOARCH, with variant for ARM).
PLATFORMS = {
    "amd64": ("amd64", None),
    "arm64": ("arm64", "v8"),
    "arm/v7": ("arm", "v7"),
    "arm/v6": ("arm", "v6"),
    "386": ("386", None),
    "ppc64le": ("ppc64le", None),
    "riscv64": ("riscv64", None),
}

# The Dockerfile's runtime stage, as image config (keep the two the same).
RUNTIME = {
    "User": "65532:65532",
    "ExposedPorts": {"9095/tcp": {}},
    "StopSignal": "SIGTERM",
    "Entrypoint": ["/drainit"],
}

# A fixed time for the layer's file and the config: reproducible digests.
EPOCH = 0
CREATED = "1970-01-01T00:00:00Z"


def blob(blobs, data, media_type):
    """Stores data as a blob; returns its OCI descriptor."""
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    blobs[digest] = data
    return {"mediaType": media_type, "digest": digest, "size": len(data)}


def layer_of(binary):
    """A tar holding the binary as /drainit, mode 0755, owned by root."""
    with open(binary, "rb") as f:
        data = f.read()
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("drainit")
        info.size = len(data)
        info.mode = 0o755
        info.mtime = EPOCH
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", required=True)
    parser.add_argument("--name", default="drainit")
    parser.add_argument("--out", required=True)
    parser.add_argument("images", nargs="+", metavar="PLATFORM=BINARY")
    args = parser.parse_args()

    blobs = {}
    index = []
    docker = []
    for n, spec in enumerate(args.images):
        platform, _, binary = spec.partition("=")
        if platform not in PLATFORMS or not binary:
            sys.exit(f"oci-image: '{spec}': expected PLATFORM=BINARY, PLATFORM one of {', '.join(PLATFORMS)}")
        arch, variant = PLATFORMS[platform]
        layer_bytes = layer_of(binary)
        layer = blob(blobs, layer_bytes, "application/vnd.oci.image.layer.v1.tar")
        config = {
            "created": CREATED,
            "architecture": arch,
            "os": "linux",
            "config": RUNTIME,
            "rootfs": {"type": "layers", "diff_ids": [layer["digest"]]},
            "history": [{"created": CREATED, "created_by": "COPY drainit /drainit (scripts/release.sh)"}],
        }
        if variant:
            config["variant"] = variant
        config_desc = blob(
            blobs, json.dumps(config, sort_keys=True).encode(), "application/vnd.oci.image.config.v1+json"
        )
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": config_desc,
            "layers": [layer],
        }
        manifest_desc = blob(
            blobs, json.dumps(manifest, sort_keys=True).encode(), "application/vnd.oci.image.manifest.v1+json"
        )
        manifest_desc["platform"] = {"architecture": arch, "os": "linux"}
        if variant:
            manifest_desc["platform"]["variant"] = variant
        index.append(manifest_desc)
        tag = f"{args.name}:{args.version}-{platform.replace('/', '')}"
        tags = [tag, f"{args.name}:{args.version}"] if n == 0 else [tag]
        docker.append(
            {
                "Config": "blobs/sha256/" + config_desc["digest"].split(":", 1)[1],
                "RepoTags": tags,
                "Layers": ["blobs/sha256/" + layer["digest"].split(":", 1)[1]],
            }
        )

    image_index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": index,
    }
    # The layout's top index names the multi-arch index (what `skopeo copy
    # --all` pushes under one tag).
    index_desc = blob(blobs, json.dumps(image_index, sort_keys=True).encode(), "application/vnd.oci.image.index.v1+json")
    index_desc["annotations"] = {"org.opencontainers.image.ref.name": args.version}
    top = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [index_desc]}

    files = {
        "oci-layout": json.dumps({"imageLayoutVersion": "1.0.0"}).encode(),
        "index.json": json.dumps(top, sort_keys=True).encode(),
        "manifest.json": json.dumps(docker, sort_keys=True).encode(),
    }
    tmp = args.out + ".partial"
    with tarfile.open(tmp, mode="w", format=tarfile.PAX_FORMAT) as tar:
        entries = [("blobs", None), ("blobs/sha256", None)]
        entries += [("blobs/sha256/" + d.split(":", 1)[1], data) for d, data in sorted(blobs.items())]
        entries += sorted(files.items())
        for name, data in entries:
            info = tarfile.TarInfo(name)
            info.mtime = EPOCH
            info.uid = info.gid = 0
            if data is None:
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                tar.addfile(info)
            else:
                info.mode = 0o644
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    os.replace(tmp, args.out)
    for entry in index:
        platform = entry["platform"]
        name = platform["architecture"] + ("/" + platform["variant"] if "variant" in platform else "")
        print(f"oci-image: linux/{name} {entry['digest']}", file=sys.stderr)


if __name__ == "__main__":
    main()
