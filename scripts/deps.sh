#!/usr/bin/env bash
# Installs Hopper's build dependencies from Debian's packages when any is missing.
# Safe to run repeatedly: it does nothing when everything is present.
set -euo pipefail

pkgs=(build-essential cmake pkg-config libzmq3-dev libczmq-dev libmsgpack-dev libcmocka-dev
      libjansson-dev libmicrohttpd-dev libncurses-dev curl)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "hopper: installing missing packages: ${missing[*]}" >&2
sudo=""
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "hopper: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
    sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
