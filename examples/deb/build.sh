#!/usr/bin/env bash
# Builds the Debian package: target/debian/drifter-rsyslog_VERSION-1_ARCH.deb.
#
#   cargo install cargo-deb --locked
#   examples/deb/build.sh
#
# The manual pages and the shell completions are made by the binary just built (`man --dir`,
# `completions SHELL`) from the same clap definitions as its --help, so they cannot drift from
# it; the rsyslog configurations are copied with the packaged paths (/usr/bin, the dead-letter
# file inside the spool directory, which rsyslog's user may write). All of that goes under
# TARGET/release/deb (TARGET: cargo's target directory), where [package.metadata.deb] in
# Cargo.toml takes it, then `cargo deb --no-build` packs the same binary.
#
# DRIFTER_DEB_NO_BUILD=1 skips the cargo build (the release binary is already there).
set -euo pipefail
cd "$(dirname "$0")/../.."

die() { echo "examples/deb/build.sh: $*" >&2; exit 1; }
command -v cargo-deb >/dev/null || die "cargo-deb is missing: cargo install cargo-deb --locked"

if [ -z "${DRIFTER_DEB_NO_BUILD:-}" ]; then
    cargo build --release --locked
fi
target=$(cargo metadata --format-version 1 --no-deps --locked \
    | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
[ -n "$target" ] || die "cannot tell cargo's target directory"
binary="$target/release/drifter-rsyslog"
[ -x "$binary" ] || die "$binary is missing: build it (cargo build --release --locked)"

out="$target/release/deb"
rm -rf "$out"
mkdir -p "$out/man" "$out/completions" "$out/rsyslog.d"
"$binary" man --dir "$out/man"
# Compressed as Debian's policy asks (cargo-deb compresses only the pages it did not find
# under target/).
gzip -9n "$out"/man/*.1
"$binary" completions bash > "$out/completions/drifter-rsyslog"
"$binary" completions zsh > "$out/completions/_drifter-rsyslog"
"$binary" completions fish > "$out/completions/drifter-rsyslog.fish"
for config in rsyslog.d/*.conf; do
    sed -e 's|/usr/local/bin/drifter-rsyslog|/usr/bin/drifter-rsyslog|g' \
        -e 's|/var/spool/drifter-rsyslog\.dead|/var/spool/drifter-rsyslog/dead-letter|g' \
        "$config" > "$out/rsyslog.d/$(basename "$config")"
    ! grep -q /usr/local/bin "$out/rsyslog.d/$(basename "$config")" \
        || die "$config: a /usr/local/bin path is left"
done

cargo deb --no-build "$@"
