#!/bin/sh
# Builds the drifter-rsyslog sidecar image offline: a static release binary in a FROM scratch
# image, so no base image is pulled from any registry.
#
#   examples/container/build.sh [IMAGE]         (default drifter-rsyslog:latest)
#
# ENGINE picks podman (default) or docker; ENGINE_FLAGS go before the engine's subcommand
# (e.g. ENGINE_FLAGS='--runtime runc --cgroup-manager=cgroupfs' for podman as root where
# systemd and crun are absent). SKIP_CARGO=1 takes an already built binary.
set -eu

image=${1:-drifter-rsyslog:latest}
engine=${ENGINE:-podman}
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
target="$(uname -m)-unknown-linux-gnu"
binary="${CARGO_TARGET_DIR:-$repo/target}/$target/release/drifter-rsyslog"

if [ -z "${SKIP_CARGO:-}" ]; then
    # glibc linked statically: the image has no libc. DNS still works: glibc's built-in
    # files and dns lookups read /etc/nsswitch.conf, /etc/hosts and /etc/resolv.conf, which
    # the engine mounts. TLS roots are compiled in (webpki-roots), and the CA bundle is copied
    # for --trust system.
    (cd "$repo" && RUSTFLAGS='-C target-feature=+crt-static' \
        cargo build --release --locked --target "$target")
fi
[ -x "$binary" ] || { echo "no binary at $binary" >&2; exit 2; }
if ldd "$binary" 2>/dev/null | grep -q '=>'; then
    echo "$binary is dynamically linked; the image has no shared libraries" >&2
    exit 2
fi

context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
root="$context/rootfs"
mkdir -p "$root/usr/local/bin" "$root/etc/ssl/certs" "$root/tmp" "$context/spool"
cp "$binary" "$root/usr/local/bin/drifter-rsyslog"
strip "$root/usr/local/bin/drifter-rsyslog" 2>/dev/null || true
chmod 1777 "$root/tmp"
if [ -r /etc/ssl/certs/ca-certificates.crt ]; then
    cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
else
    echo "warning: no /etc/ssl/certs/ca-certificates.crt here; the image has only the built-in roots" >&2
fi
printf 'root:x:0:0:root:/:/sbin/nologin\ndrifter:x:65532:65532:drifter-rsyslog:/tmp:/sbin/nologin\n' >"$root/etc/passwd"
printf 'root:x:0:\ndrifter:x:65532:\n' >"$root/etc/group"
printf 'hosts: files dns\n' >"$root/etc/nsswitch.conf"
cp "$here/Containerfile" "$context/Containerfile"

# shellcheck disable=SC2086 # ENGINE_FLAGS is a list of flags.
$engine ${ENGINE_FLAGS:-} build --tag "$image" --file "$context/Containerfile" "$context"
$engine ${ENGINE_FLAGS:-} image inspect --format '{{.Size}}' "$image" |
    awk -v image="$image" '{ printf "%s: %.1f MB\n", image, $1 / 1000000 }'
