#!/usr/bin/env bash
# lumen-ui's web app: installs Node.js, npm and Chromium (for the browser
# test) from Debian when missing, then `npm ci` (the committed lock file)
# and the build into ui/web/dist, which the lumen-ui binary embeds.
# Idempotent; run as root (scripts/setup.sh calls it).
set -euo pipefail
cd "$(dirname "$0")/web"

need=()
command -v node >/dev/null || need+=(nodejs)
command -v npm >/dev/null || need+=(npm)
[ -x /usr/bin/chromium ] || need+=(chromium)
if [ "${#need[@]}" -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# npm ci starts over from the lock file: only when node_modules was not
# installed from this very lock file (the stamp is a copy of it).
if ! cmp -s package-lock.json node_modules/.lumen-lock.json 2>/dev/null; then
  npm ci --no-audit --no-fund --loglevel=error
  cp package-lock.json node_modules/.lumen-lock.json
fi
npm run --silent build
