"""The report's style sheet (inline in the page: the file must stand alone).

Print: A4, table headers repeated on every page, rows and figures not split.
A simulated batch gets a red banner and two ``position: fixed`` marks (a corner
badge and a faint diagonal watermark): Chromium repeats fixed elements on every
printed page, which is how the mark runs through a printout (it does not
support ``@page`` margin boxes). In print the badge becomes a red strip down a
right gutter that the body's padding keeps free on every page, so it hides no text.
"""

from __future__ import annotations

CSS = """
:root { --ink: #1b1f24; --muted: #59636e; --rule: #c9d1d9; --head: #eef1f4;
        --bad: #b00020; --good: #1a7f37; --warn: #9a6700; }
* { box-sizing: border-box; }
body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
       color: var(--ink); margin: 0 auto; padding: 16px 24px 48px; max-width: 1200px; }
h1 { font-size: 24px; margin: 8px 0 4px; }
h2 { font-size: 19px; margin: 28px 0 8px; padding-bottom: 4px; border-bottom: 2px solid var(--ink);
     break-after: avoid; }
h3 { font-size: 15px; margin: 18px 0 6px; break-after: avoid; }
p { margin: 6px 0; }
code, .mono { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace;
              font-size: 12px; }
.hash { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 11px;
        overflow-wrap: anywhere; }
table { border-collapse: collapse; width: 100%; margin: 6px 0 12px; font-size: 13px; }
th, td { border: 1px solid var(--rule); padding: 3px 6px; text-align: left; vertical-align: top;
         overflow-wrap: break-word; }
thead th { background: var(--head); }
thead { display: table-header-group; }
tbody tr:nth-child(even) td { background: #f8f9fa; }
table.keys { width: auto; min-width: 60%; }
table.keys th { background: var(--head); white-space: nowrap; font-weight: 600; }
.utc { color: var(--muted); font-size: 12px; }
.sub { color: var(--muted); font-size: 12px; }
.sent code { font-size: 11px; color: var(--muted); }
/* Code has no good break points: let it break anywhere rather than widen the table. */
td code, .free { overflow-wrap: anywhere; }
.when { white-space: nowrap; }
.empty, .note { color: var(--muted); font-style: italic; }
.ok { color: var(--good); font-weight: 600; }
.bad { color: var(--bad); font-weight: 700; }
.warn { color: var(--warn); font-weight: 600; }
.tag { display: inline-block; padding: 0 5px; border-radius: 3px; font-size: 11px;
       font-weight: 700; border: 1px solid currentColor; }
.banner { padding: 10px 14px; margin: 0 0 10px; font-weight: 700; text-align: center;
          letter-spacing: .04em; border-radius: 4px; }
.banner.sim { background: var(--bad); color: #fff; font-size: 18px; }
.banner.broken { background: #fff0f0; color: var(--bad); border: 2px solid var(--bad); }
.sim-mark { position: fixed; top: 6px; right: 6px; z-index: 20; background: var(--bad);
            color: #fff; font-weight: 800; font-size: 13px; letter-spacing: .12em;
            padding: 3px 10px; border-radius: 3px; pointer-events: none; }
.sim-watermark { position: fixed; top: 42%; left: 0; right: 0; z-index: 10;
                 text-align: center; font-size: 96px; font-weight: 800; letter-spacing: .1em;
                 color: rgba(176, 0, 32, .09); transform: rotate(-28deg);
                 pointer-events: none; user-select: none; }
nav.toc { font-size: 13px; margin: 8px 0 4px; }
nav.toc a { margin-right: 12px; color: var(--ink); }
figure { margin: 10px 0 18px; break-inside: avoid; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--rule); }
figcaption { color: var(--muted); font-size: 12px; }
footer { margin-top: 32px; color: var(--muted); font-size: 12px; border-top: 1px solid var(--rule);
         padding-top: 6px; }
@page { size: A4; margin: 14mm 11mm 14mm 11mm; }
@media print {
  body { font-size: 10pt; max-width: none; padding: 0; }
  table { font-size: 8.5pt; }
  .utc { font-size: 7.5pt; }
  tr, figure, .banner { break-inside: avoid; }
  h2 { break-after: avoid; }
  nav.toc { display: none; }
  a { color: inherit; text-decoration: none; }
  tbody tr:nth-child(even) td { background: none; }
  /* A strip in a right gutter kept free on every page: it repeats, and covers no text. */
  body.simulated { padding-right: 10mm; }
  .sim-mark { top: 0; bottom: 0; right: 0; width: 7mm; padding: 0; border-radius: 0;
              display: flex; align-items: center; justify-content: center;
              writing-mode: vertical-rl; font-size: 10pt; letter-spacing: .5em;
              print-color-adjust: exact; -webkit-print-color-adjust: exact; }
  .banner.sim { print-color-adjust: exact; -webkit-print-color-adjust: exact; }
}
"""
