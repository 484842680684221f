// Output lines -> HTML rows, with no DOM (the run-stream worker uses it; tests run it under Node).
// One ANSI converter per (stream, host): colours one host or stream sets never bleed into another's
// lines. Each line is converted on its own (the vendored ansi_up is patched for that: see
// assets/vendor/README.md), so a broken escape sequence can spoil at most its own line.
import { AnsiUp } from '../vendor/ansi_up.js';

export const escapeHtml = text => text.replace(/[&<>"']/g, c => `&#${c.charCodeAt(0)};`);

export class Rows {
  constructor() {
    this.converters = new Map();
  }

  converter(stream, host) {
    const key = `${stream}\n${host || ''}`;
    let ansi = this.converters.get(key);
    if (!ansi) {
      ansi = new AnsiUp();
      ansi.use_classes = true;  // classes, not style attributes: the page's CSP allows no inline style
      this.converters.set(key, ansi);
    }
    return ansi;
  }

  // A line that will not be shown: only its colour codes matter, for the lines after it.
  skip(stream, host, line) {
    if (line.includes('\x1b')) this.converter(stream, host).ansi_to_html(line);
  }

  // One line as a row: `<div class="l">`, `l e` for stderr, the host's name first on remote runs.
  // A progress bar redrawn with `\r` (curl, pip, rsync) shows its last drawing, as a terminal
  // leaves it; the colours set in the drawings before it still count. Downloads keep every byte.
  row(stream, host, line) {
    const ansi = this.converter(stream, host);
    const cut = line.lastIndexOf('\r');
    if (cut >= 0) {
      if (line.includes('\x1b')) ansi.ansi_to_html(line.slice(0, cut));
      line = line.slice(cut + 1);
    }
    return (stream === 'stderr' ? '<div class="l e">' : '<div class="l">') +
      (host ? `<span class="host">${escapeHtml(host)}</span>` : '') + ansi.ansi_to_html(line) + '</div>';
  }
}
