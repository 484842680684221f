// Reads {"lines": [[stream, host, line], ...]} as JSON on stdin; prints {"rows": [...], "ms": N}:
// each line through assets/js/ansi.js (the converter the page's output worker uses), and the time
// the whole batch took.
import { readFileSync } from 'node:fs';
import { Rows } from '../../assets/js/ansi.js';

const {lines} = JSON.parse(readFileSync(0, 'utf8'));
const rows = new Rows();
const t0 = performance.now();
const out = lines.map(([stream, host, line]) => rows.row(stream, host, line));
const ms = performance.now() - t0;
process.stdout.write(JSON.stringify({rows: out, ms}));
