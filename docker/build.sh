#!/usr/bin/env bash
# `make image`: the CPU image (docker/Dockerfile.cpu) built, archived and checked on a machine with no
# Docker engine and no registry to pull a base from:
#   1. a base image from Debian packages: debootstrap --variant=minbase bookworm + python3.11, imported
#      into buildah (made once; reused while `buildah images` holds it or IMAGE_WORK keeps base.tar);
#   2. buildah build --isolation chroot of docker/Dockerfile.cpu on that base, the wheels of this
#      machine's pip find-links folder (/opt/wheels: torch 2.13.0+cpu) bind-mounted into the build;
#   3. the image as an OCI archive, its digest and a reference for `drtl-kfp compile --image`;
#   4. docker/stage_smoke.sh in the image (buildah run) and on the host, compared by
#      docker/compare_runs.py: the last line says whether the outputs are identical.
# Outputs under IMAGE_OUT (default outputs/image, git-ignored): drtl-cpu.oci.tar, drtl-cpu.digest,
# drtl-cpu.image (REF@sha256:...), build.json (times, sizes), compare/{host,image}/, compare.txt.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${IMAGE_OUT:-outputs/image}
WORK=${IMAGE_WORK:-/var/tmp/drtl-image}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
BASE=${IMAGE_BASE:-localhost/drtl-base:bookworm-py311}
NAME=${IMAGE_NAME:-localhost/drtl}
TAG=${IMAGE_TAG:-0.1.0-cpu}
WHEELS=${IMAGE_WHEELS:-/opt/wheels}
CA=${IMAGE_CA:-/etc/ssl/certs/ca-certificates.crt}  # the CA bundle of this machine, for pip in the build
HOST_DRTL=${HOST_DRTL:-.venv/bin/drtl}
HOST_PY=${HOST_PY:-.venv/bin/python}
BASE_PACKAGES=python3.11,python3.11-venv,python3-distutils,python3-lib2to3,ca-certificates
say() { echo "make image: $*"; }
die() { echo "make image: error: $*" >&2; exit 1; }

for tool in buildah debootstrap; do
  if ! command -v "$tool" > /dev/null; then
    [ "$(id -u)" = 0 ] && command -v apt-get > /dev/null || die "$tool is missing; install it (Debian: apt-get install -y buildah debootstrap)"
    say "installing buildah and debootstrap with apt-get"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends buildah debootstrap > /dev/null \
      || die "apt-get install buildah debootstrap failed; install them and rerun"
  fi
done
[ -x "$HOST_DRTL" ] || die "$HOST_DRTL is missing; run make setup first"
mkdir -p "$OUT" "$WORK"
t0=$(date +%s)

# 1. the base image
if buildah inspect --type image "$BASE" > /dev/null 2>&1; then
  say "base $BASE present"
else
  if [ ! -f "$WORK/base.tar" ]; then
    say "base: debootstrap --variant=minbase bookworm + $BASE_PACKAGES (a few minutes)"
    rm -rf "$WORK/rootfs"
    debootstrap --variant=minbase --include="$BASE_PACKAGES" bookworm "$WORK/rootfs" "$MIRROR" > "$WORK/debootstrap.log" 2>&1 \
      || die "debootstrap failed; see $WORK/debootstrap.log"
    chroot "$WORK/rootfs" apt-get clean
    rm -rf "$WORK"/rootfs/var/lib/apt/lists/* "$WORK"/rootfs/var/cache/apt/*.bin "$WORK"/rootfs/var/log/*.log
    chroot "$WORK/rootfs" dpkg-query -W > "$WORK/base-packages.txt"
    tar --numeric-owner -C "$WORK/rootfs" -cf "$WORK/base.tar.tmp" . && mv "$WORK/base.tar.tmp" "$WORK/base.tar"
  fi
  ctr=$(buildah from scratch)
  buildah add --quiet "$ctr" "$WORK/base.tar" / > /dev/null
  buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --cmd /bin/bash \
    --label org.opencontainers.image.description="Debian bookworm minbase + python3.11 (debootstrap)" "$ctr"
  buildah commit --quiet --rm "$ctr" "$BASE" > /dev/null
  say "base $BASE imported from $WORK/base.tar"
fi
[ -f "$WORK/base-packages.txt" ] && cp "$WORK/base-packages.txt" "$OUT/base-packages.txt"
t1=$(date +%s)

# 2. the CPU image
say "buildah build docker/Dockerfile.cpu on $BASE"
buildah build --isolation chroot --layers -f docker/Dockerfile.cpu \
  --build-arg BASE_IMAGE="$BASE" --build-arg PIP_FIND_LINKS=/opt/wheels \
  --build-arg PIP_EXTRA_INDEX_URL=https://pypi.org/simple \
  --build-arg PIP_CERT=/run/host-ca.crt --volume "$CA:/run/host-ca.crt:ro" \
  --volume "$WHEELS:/opt/wheels:ro" -t "$NAME:$TAG" . > "$OUT/build.log" 2>&1 \
  || { tail -20 "$OUT/build.log" >&2; die "buildah build failed; see $OUT/build.log"; }
t2=$(date +%s)

# 3. the OCI archive and its digest
rm -f "$OUT/drtl-cpu.oci.tar"
buildah push --quiet --digestfile "$OUT/drtl-cpu.digest" "$NAME:$TAG" "oci-archive:$OUT/drtl-cpu.oci.tar:$NAME:$TAG" > /dev/null
digest=$(cat "$OUT/drtl-cpu.digest")
echo "$NAME@$digest" > "$OUT/drtl-cpu.image"
t3=$(date +%s)

# 4. one stage chain in the image and on the host, compared
rm -rf "$OUT/compare" && mkdir -p "$OUT/compare/image"
chmod 0777 "$OUT/compare/image"  # the image runs as its user drtl (uid 1000)
ctr=$(buildah from --quiet "$NAME:$TAG")
trap 'buildah rm "$ctr" > /dev/null 2>&1 || true' EXIT
buildah run --isolation chroot --volume "$PWD/docker/stage_smoke.sh:/opt/drtl/stage_smoke.sh:ro" \
  --volume "$PWD/$OUT/compare/image:/workspace/run" "$ctr" -- sh /opt/drtl/stage_smoke.sh /workspace/run drtl \
  > "$OUT/compare/image.log" 2>&1 || { tail -5 "$OUT/compare/image.log" >&2; die "the stage chain failed in the image; see $OUT/compare/image.log"; }
t4=$(date +%s)
sh docker/stage_smoke.sh "$OUT/compare/host" "$PWD/$HOST_DRTL" > "$OUT/compare/host.log" 2>&1 \
  || die "the stage chain failed on the host; see $OUT/compare/host.log"
t5=$(date +%s)

size=$(buildah images --format '{{.Size}}' "$NAME:$TAG" | head -1)  # uncompressed, e.g. "2.45 GB"
layers=$(buildah inspect --type image --format '{{len .OCIv1.RootFS.DiffIDs}}' "$NAME:$TAG")
archive=$(stat -c %s "$OUT/drtl-cpu.oci.tar")
python_v=$(buildah run --isolation chroot "$ctr" -- python --version 2>&1)
cat > "$OUT/build.json" <<JSON
{"image": "$NAME:$TAG", "reference": "$NAME@$digest", "base": "$BASE", "python": "$python_v",
 "base_s": $((t1 - t0)), "build_s": $((t2 - t1)), "push_s": $((t3 - t2)), "stage_in_image_s": $((t4 - t3)),
 "stage_on_host_s": $((t5 - t4)), "image_size": "$size", "layers": $layers, "oci_archive_bytes": $archive}
JSON
set +e
"$HOST_PY" docker/compare_runs.py "$OUT/compare/host" "$OUT/compare/image" > "$OUT/compare.txt"
same=$?
set -e
cat "$OUT/compare.txt"
say "base $((t1 - t0)) s, build $((t2 - t1)) s, archive $((t3 - t2)) s, stage chain in the image $((t4 - t3)) s / on the host $((t5 - t4)) s"
say "image $NAME:$TAG ($python_v): $size in $layers layers; OCI archive $OUT/drtl-cpu.oci.tar $((archive / 1000000)) MB"
say "drtl-kfp compile --image $(cat "$OUT/drtl-cpu.image")   (or --image $OUT/drtl-cpu.image)"
exit $same
