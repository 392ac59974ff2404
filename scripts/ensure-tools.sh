#!/usr/bin/env bash
# Test tools from Debian's packages: SIPp (sip-tester) places real SIP calls in the switchboard
# tests; debootstrap builds the Asterisk chroot (the project installs it itself if missing);
# espeak-ng and sox make the Vietnamese/English prompts and the test callers' speech.
# Node.js/npm build the staff screens (esbuild, from npm at setup); Debian's Chromium runs the
# browser tests (Playwright drives it: no browser is ever downloaded).
set -euo pipefail
need=()
command -v sipp >/dev/null || need+=(sip-tester)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v espeak-ng >/dev/null || need+=(espeak-ng)
command -v sox >/dev/null || need+=(sox)
command -v npm >/dev/null || need+=(nodejs npm)
[[ -x /usr/bin/chromium ]] || need+=(chromium)
if ((${#need[@]})); then
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
        echo "installing ${need[*]}" >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >&2
    else
        echo "missing ${need[*]}: apt-get install ${need[*]} (as root)" >&2
        exit 1
    fi
fi
echo "tools: sipp $(sipp -v 2>/dev/null | grep -o 'v[0-9.]*' | head -1), debootstrap, espeak-ng, sox, node $(node --version), $(/usr/bin/chromium --version 2>/dev/null | head -1)"
