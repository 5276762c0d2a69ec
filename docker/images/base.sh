#!/usr/bin/env bash
# debootstrap a minbase Debian bookworm into $1 and import it as image $2 with recipe label $3.
set -euo pipefail
rootfs=$1 image=$2 recipe=$3
rm -rf "$rootfs"; mkdir -p "$rootfs"
debootstrap --variant=minbase bookworm "$rootfs" http://deb.debian.org/debian >"$rootfs.log" 2>&1 \
  || { tail -20 "$rootfs.log" >&2; exit 1; }
# The same package sources and apt settings as the host (its mirror serves dated snapshots).
cat > "$rootfs/etc/apt/sources.list" <<'LIST'
deb http://deb.debian.org/debian bookworm main
deb http://deb.debian.org/debian bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
LIST
cp /etc/apt/apt.conf.d/99artifact-registry "$rootfs/etc/apt/apt.conf.d/" 2>/dev/null || true
printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' > "$rootfs/etc/apt/apt.conf.d/90no-recommends"
# Like Debian's slim images: no documentation now or from later installs.
cat > "$rootfs/etc/dpkg/dpkg.cfg.d/90apprunner-slim" <<'SLIM'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
SLIM
find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete 2>/dev/null || true
rm -rf "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/var/log/*.log "$rootfs"/var/cache/debconf/*-old
find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} + 2>/dev/null || true
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/lib/apt/lists/*
tar --numeric-owner -C "$rootfs" -c . | /usr/bin/docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change "LABEL dev.apprunner-build.recipe=$recipe" \
  --change 'LABEL org.opencontainers.image.description="Debian bookworm minbase (debootstrap), the base of every apprunner-build stand-in runtime image"' \
  --change 'CMD ["/bin/bash"]' - "$image" >/dev/null
rm -rf "$rootfs"
