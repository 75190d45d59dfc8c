#!/usr/bin/env bash
# Spark 4 needs Java 17+. Install a headless JRE with apt when none is found (CI runs as root).
set -euo pipefail
version=0
if command -v java >/dev/null 2>&1; then
  version=$(java -version 2>&1 | sed -nE 's/.*version "([0-9]+).*/\1/p' | head -n1)
fi
if [ "${version:-0}" -ge 17 ]; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "Java 17+ not found (found: ${version:-none}); installing openjdk-17-jre-headless with apt…"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless >/dev/null
  exit 0
fi
echo "error: Spark needs Java 17 or newer; install it (e.g. 'sudo apt-get install openjdk-17-jre-headless') or set JAVA_HOME" >&2
exit 1
