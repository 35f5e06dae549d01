#!/usr/bin/env bash
# Opens a smoke-tier report.html in headless Chromium (Debian's package; installed here when
# missing) and checks that it loads with no console or resource error and that every figure
# renders at a non-zero size; saves a screenshot.
#
#   bash ci/browser-check.sh [OUT_DIR]     # default: a temporary directory; prints where
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-$(mktemp -d)}"
mkdir -p "$out"
if ! command -v chromium >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq chromium >/dev/null
fi
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/beatmatch-target}"
cargo run -q --release --bin suite -- run --tier smoke --out "$out/report" --quiet
# The figures the report has: reports::figures::FIGURES, as `suite kinds` lists them.
figures=$(cargo run -q --release --bin suite -- kinds | sed -n 's/^figures: //p')
[ -n "$figures" ] || { echo "browser check: suite kinds lists no figures" >&2; exit 1; }
# A copy of the page that records errors and each figure's rendered size into the DOM, which
# `--dump-dom` prints once the page has loaded.
python3 - "$out/report/report.html" "$out/check.html" <<'PY'
import sys
page = open(sys.argv[1], encoding="utf-8").read()
probe = """<script>
window.__errors = [];
window.addEventListener('error', e => window.__errors.push(String(e.message || (e.target && e.target.outerHTML) || e)), true);
for (const level of ['error', 'warn']) { const f = console[level]; console[level] = (...a) => { window.__errors.push(level + ': ' + a.join(' ')); f.apply(console, a); }; }
window.addEventListener('load', () => {
  const figs = [...document.querySelectorAll('figure[id] svg, img[id]')].map(el => { const r = el.getBoundingClientRect(); return [(el.closest('[id]') || el).id, Math.round(r.width), Math.round(r.height)]; });
  const pre = document.createElement('pre'); pre.id = '__check';
  pre.textContent = JSON.stringify({errors: window.__errors, figures: figs});
  document.body.appendChild(pre);
});
</script>"""
open(sys.argv[2], "w", encoding="utf-8").write(page.replace("<head>", "<head>" + probe, 1))
PY
flags=(--headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking --disable-component-update --disable-sync --user-data-dir="$out/profile" --window-size=1280,4000)
chromium "${flags[@]}" --virtual-time-budget=10000 --dump-dom "file://$out/check.html" > "$out/dom.html" 2> "$out/chromium.log"
chromium "${flags[@]}" --screenshot="$out/report.png" "file://$out/report/report.html" >> "$out/chromium.log" 2>&1
python3 - "$out/dom.html" "$out/report.png" "$figures" <<'PY'
import html, json, re, sys
dom = open(sys.argv[1], encoding="utf-8").read()
m = re.search(r'<pre id="__check">(.*?)</pre>', dom, re.S)
if not m:
    sys.exit("browser check: the page did not finish loading (no probe result in the DOM)")
r = json.loads(html.unescape(m.group(1)))
print("browser check: %d figures %s; errors: %s" % (len(r["figures"]), r["figures"], r["errors"] or "none"))
if r["errors"]:
    sys.exit("browser check FAILED: console or resource errors")
expected = [f.strip() for f in sys.argv[3].split(",")]
drawn = {name: (w, h) for name, w, h in r["figures"]}
missing = [f for f in expected if f not in drawn]
if missing or any(w <= 0 or h <= 0 for w, h in drawn.values()):
    sys.exit("browser check FAILED: figures missing %s or of zero size (expected %s)" % (missing, expected))
import os
if os.path.getsize(sys.argv[2]) < 10_000:
    sys.exit("browser check FAILED: no screenshot")
print("browser check passed; screenshot", sys.argv[2])
PY
