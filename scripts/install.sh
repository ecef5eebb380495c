#!/usr/bin/env bash
# `make install`: jetvox as a system service. Code and venv in /opt/jetvox, config in /etc/jetvox/jetvox.yaml
# (an existing one is kept), systemd units, a `jetvox` system user; the services are enabled and started.
#
# Environment:
#   PREFIX=/opt/jetvox        where the code (PREFIX/src) and the venv (PREFIX/venv) go
#   PYTHON=python3            interpreter for the venv
#   DESTDIR=                  stage into this root instead (packaging, tests): no user, no systemctl, no chown
#   JETVOX_SKIP_VENV=1        copy the code but do not build the venv
#   JETVOX_NO_ENABLE=1        install the units but do not enable or start them
#   JETVOX_SKIP_APT=1         do not install Debian packages
set -euo pipefail

PREFIX=${PREFIX:-/opt/jetvox}
PYTHON=${PYTHON:-python3}
DESTDIR=${DESTDIR:-}
SRC=$(cd "$(dirname "$0")/.." && pwd)
UNIT_DIR=/etc/systemd/system
CONF_DIR=/etc/jetvox
STATE_DIR=/var/lib/jetvox
say() { echo "install: $*"; }

if [ -z "$DESTDIR" ] && [ "$(id -u)" -ne 0 ]; then
  echo "install: run as root: sudo make install" >&2
  exit 1
fi

if [ -z "$DESTDIR" ] && [ -z "${JETVOX_SKIP_APT:-}" ]; then
  "$SRC/scripts/apt-deps.sh"
fi

# 1. The system user: no login, home is the state directory, sound and GPU groups.
if [ -z "$DESTDIR" ]; then
  if ! getent passwd jetvox >/dev/null; then
    say "creating system user jetvox"
    useradd --system --user-group --home-dir "$STATE_DIR" --no-create-home \
      --shell /usr/sbin/nologin --comment "jetvox text-to-speech" jetvox
  fi
  for group in audio video render; do
    if getent group "$group" >/dev/null; then
      usermod -a -G "$group" jetvox
    fi
  done
fi

# 2. The code, copied (not linked) so the service never runs out of a developer's checkout.
say "copying the code to $DESTDIR$PREFIX/src"
install -d -m 0755 "$DESTDIR$PREFIX/src"
tar -C "$SRC" \
  --exclude=./.venv --exclude=./.git --exclude='*.egg-info' --exclude=__pycache__ \
  --exclude=./.pytest_cache --exclude=./.mypy_cache --exclude=./.ruff_cache --exclude=./demo.wav --exclude=./shared \
  --exclude=./provisioning/distill/results \
  -cf - . | tar -C "$DESTDIR$PREFIX/src" -xf -

# 3. The venv. On a Jetson, TensorRT and pycuda come from JetPack's system packages: let the venv see them.
if [ -z "${JETVOX_SKIP_VENV:-}" ]; then
  venv_args=()
  if [ -e /etc/nv_tegra_release ]; then
    venv_args+=(--system-site-packages)
  fi
  say "building the venv in $DESTDIR$PREFIX/venv"
  "$PYTHON" -m venv "${venv_args[@]}" "$DESTDIR$PREFIX/venv"
  "$DESTDIR$PREFIX/venv/bin/python" -m pip install -q --upgrade pip
  "$DESTDIR$PREFIX/venv/bin/python" -m pip install -q "$DESTDIR$PREFIX/src"
  if [ -e /etc/nv_tegra_release ]; then
    # The TensorRT path: JetPack's TensorRT through the system site-packages, pycuda built against its CUDA.
    "$SRC/scripts/jetson-deps.sh" "$DESTDIR$PREFIX/venv/bin/python" || say "TensorRT path not ready (see above)"
  fi
fi

# 4. The configuration: the documented example, unless one is already there.
install -d -m 0755 "$DESTDIR$CONF_DIR"
if [ -e "$DESTDIR$CONF_DIR/jetvox.yaml" ]; then
  say "keeping the existing $CONF_DIR/jetvox.yaml (the new example is $CONF_DIR/jetvox.example.yaml)"
else
  say "writing $CONF_DIR/jetvox.yaml"
  install -m 0640 "$SRC/config/jetvox.example.yaml" "$DESTDIR$CONF_DIR/jetvox.yaml"
  if [ -z "$DESTDIR" ]; then
    chgrp jetvox "$CONF_DIR/jetvox.yaml"  # it may hold the broker password: readable by the service only
  fi
fi
install -m 0644 "$SRC/config/jetvox.example.yaml" "$DESTDIR$CONF_DIR/jetvox.example.yaml"

# 5. The units.
install -d -m 0755 "$DESTDIR$UNIT_DIR"
for unit in jetvox.service jetvox-provision.service; do
  install -m 0644 "$SRC/systemd/$unit" "$DESTDIR$UNIT_DIR/$unit"
done
say "installed the units in $UNIT_DIR"

# 6. Enable and start: provisioning runs first (a no-op when the voice is current), then the daemon.
if [ -z "$DESTDIR" ] && [ -z "${JETVOX_NO_ENABLE:-}" ]; then
  systemctl daemon-reload
  systemctl enable jetvox-provision.service jetvox.service
  systemctl restart jetvox.service
  say "started; follow it with: journalctl -u jetvox -u jetvox-provision -f"
fi
say "done"
