#!/usr/bin/env bash
# Install the Debian packages jetvox needs when they are missing (as root), or name them.
set -euo pipefail
PKGS=(mosquitto libportaudio2 libsystemd-dev pkg-config espeak-ng libasound2-plugins alsa-utils systemd)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ]; then
  echo "apt-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
  echo "apt-deps: installing ${missing[*]} with sudo"
  sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "apt-deps: missing Debian packages: ${missing[*]}" >&2
  echo "apt-deps: run: sudo apt-get install ${missing[*]}" >&2
  exit 1
fi
