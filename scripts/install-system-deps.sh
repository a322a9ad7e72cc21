#!/usr/bin/env bash
# System packages carepath needs beyond Python: Graphviz draws the statechart diagram.
set -euo pipefail
if command -v dot >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "Graphviz (dot) is missing; install it with: sudo apt-get install graphviz" >&2
  exit 1
fi
echo "Installing Graphviz (for the statechart diagram)..."
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq graphviz >/dev/null
