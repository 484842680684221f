// The load campaign's clients on Node.js (bench/load.py --client node, the default when `node` is
// found): the same simulated browsers as bench/load_client.py, for a fraction of the CPU, so that
// on a small machine the clients are not what the campaign measures.
//
// Input (stdin, JSON): {url, token, clients: [[client, runId], ...], lines, begins, until,
// perAddress}. Output (stdout, JSON): the Tally fields of load_client.py, the histogram as
// [[bucket, count], ...]. Each simulated browser holds `/api/events` and one run's
// `/api/runs/<id>/events` from its first event; every line `<index> <time>` is checked to arrive
// once and in order, and its delay from print to arrival is counted in 0.1 ms buckets.
import http from "node:http";
import { performance } from "node:perf_hooks";

const BUCKET = 1e-4;
const BUCKETS = 200000;
const FINAL = new Set(["succeeded", "failed", "cancelled", "timed_out", "interrupted", "rejected", "expired"]);

const input = JSON.parse(await new Promise((resolve) => {
  let text = "";
  process.stdin.setEncoding("utf8");
  process.stdin.on("data", (chunk) => { text += chunk; });
  process.stdin.on("end", () => resolve(text));
}));
const url = new URL(input.url);
const tally = {
  clients: input.clients.length, opened: 0, finished: 0, lines: 0, lost: 0, duplicated: 0,
  clients_with_errors: 0, changes_complete: 0, errors: [], cpu: 0,
};
const histogram = new Uint32Array(BUCKETS);
const now = () => (performance.timeOrigin + performance.now()) / 1000; // seconds, as time.time()

function sourceAddress(client) {
  const group = Math.floor(client / input.perAddress);
  return `127.0.${1 + Math.floor(group / 250)}.${1 + (group % 250)}`;
}

// One SSE stream: calls onEvent(kind, data, arrived) per complete event until it returns true
// (done) or an Error (failed).
function stream(client, path, onOpen, onEvent) {
  return new Promise((resolve, reject) => {
    const req = http.get({
      host: url.hostname, port: url.port, path, localAddress: sourceAddress(client), agent: false,
      headers: { Authorization: `Bearer ${input.token}` },
    }, (res) => {
      if (res.statusCode !== 200) {
        reject(new Error(`${path}: HTTP ${res.statusCode}`));
        res.resume();
        return;
      }
      onOpen();
      res.setEncoding("utf8");
      let buffer = "";
      let done = false;
      res.on("data", (chunk) => {
        if (done) return;
        const arrived = now();
        buffer += chunk;
        const cut = buffer.lastIndexOf("\n\n");
        if (cut < 0) return;
        const complete = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        for (const block of complete.split("\n\n")) {
          let kind = null;
          let data = null;
          for (const line of block.split("\n")) {
            if (line.startsWith("event: ")) kind = line.slice(7);
            else if (line.startsWith("data: ")) data = line.slice(6);
          }
          const said = kind === null ? false : onEvent(kind, data, arrived);
          if (said) {
            done = true;
            res.destroy();
            if (said instanceof Error) reject(said);
            else resolve();
            return;
          }
        }
      });
      res.on("end", () => { if (!done) reject(new Error(`${path}: stream closed before its end`)); });
      res.on("error", (err) => { if (!done) reject(err); });
    });
    req.on("error", reject);
  });
}

async function one(client, runId, runs) {
  let next = 0;
  let bad = false;
  let opened = 0;
  const follow = stream(client, `/api/runs/${runId}/events`, () => {
    opened = now();
    if (opened < input.begins) tally.opened += 1;
  }, (kind, data, arrived) => {
    if (kind === "output") {
      for (const line of JSON.parse(data).lines) {
        const space = line.indexOf(" ");
        const index = Number(line.slice(0, space));
        const printed = Number(line.slice(space + 1));
        tally.lines += 1;
        if (index === next) next += 1;
        else if (index < next) { tally.duplicated += 1; bad = true; }
        else { tally.lost += index - next; next = index + 1; bad = true; }
        if (printed >= opened) histogram[Math.min(Math.floor((arrived - printed) / BUCKET), BUCKETS - 1)] += 1;
      }
    } else if (kind === "end") {
      tally.finished += 1;
      if (next !== input.lines) { tally.lost += input.lines - next; bad = true; }
      return true;
    }
    return false;
  });
  const waiting = new Set(runs);
  const changes = stream(client, "/api/events", () => {
    if (now() < input.begins) tally.opened += 1;
  }, (kind, data) => {
    if (kind === "ready") {
      for (const r of JSON.parse(data).active) if (FINAL.has(r.state)) waiting.delete(r.id);
    } else if (kind === "state") {
      const record = JSON.parse(data);
      if (FINAL.has(record.state)) waiting.delete(record.id);
    }
    if (waiting.size === 0) { tally.changes_complete += 1; return true; }
    if (now() > input.until) return new Error("/api/events: runs never seen ending");
    return false;
  });
  const results = await Promise.allSettled([follow, changes]);
  const failures = results.filter((r) => r.status === "rejected");
  for (const failure of failures) {
    if (tally.errors.length < 10) tally.errors.push(`client ${client}: ${failure.reason}`);
  }
  if (failures.length || bad) tally.clients_with_errors += 1;
}

const runs = [...new Set(input.clients.map(([, runId]) => runId))];
await Promise.all(input.clients.map(([client, runId]) => one(client, runId, runs)));
const usage = process.cpuUsage();
tally.cpu = (usage.user + usage.system) / 1e6;
tally.histogram = [];
histogram.forEach((count, bucket) => { if (count) tally.histogram.push([bucket, count]); });
process.stdout.write(JSON.stringify(tally));
