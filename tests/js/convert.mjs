// Reads {"lines": [[stream, host, line], ...]} as JSON on stdin; prints {"rows": [...], "ms": N}:
// each line through assets/js/ansi.js (the converter the page's output worker uses), and the CPU
// time the whole batch took (the process's: on a busy machine the wall clock also counts the waits
// for a CPU, which are not the converter's).
import { readFileSync } from 'node:fs';
import { Rows } from '../../assets/js/ansi.js';

const {lines} = JSON.parse(readFileSync(0, 'utf8'));
const rows = new Rows();
const t0 = process.cpuUsage();
const out = lines.map(([stream, host, line]) => rows.row(stream, host, line));
const {user, system} = process.cpuUsage(t0);
const ms = (user + system) / 1000;
process.stdout.write(JSON.stringify({rows: out, ms}));
