// One run's event stream, read off the page's main thread (a module worker): the EventSource with
// its Last-Event-ID resume, JSON parsing, ANSI to HTML (ansi.js: one converter per stream and host),
// and only the newest lines kept. The page
// pulls lines one animation frame's worth at a time, so a million-line flood never blocks it.
//
// page -> worker: {type: 'open', id, gen, keep, frame, host} (host: only that host's lines) | {type: 'close'} | {type: 'pull'}
// worker -> page: state | progress | end {run}, online | offline, missing {error},
//                 lines {rows, total, queued}, count {total, queued}; each with the `gen` of its open.
import { Rows } from './ansi.js';

const FINAL = new Set(['succeeded', 'failed', 'cancelled', 'timed_out', 'interrupted', 'rejected', 'expired']);  // util.js's
let run = null;

onmessage = ({data}) => {
  if (data.type === 'open') open(data);
  else if (data.type === 'close') close();
  else if (data.type === 'pull' && run) {
    run.wanted = true;
    give();
  }
};

function post(type, body = {}) {
  postMessage({type, gen: run.gen, ...body});
}

function close() {
  run?.es?.close();
  run = null;
}

function open({id, gen, keep, frame, host}) {
  close();
  run = {id, gen, keep, frame, host: host || '', rows: new Rows(), es: null, seq: 0, state: '', queue: [], queued: 0, total: 0, wanted: false};
  connect(run, 0);
}

// A worker resolves URLs against its own script (assets/js/), not the page: the app's root is two up.
const ROOT = new URL('../../', import.meta.url);

function connect(me, after) {
  const es = new EventSource(new URL(`api/runs/${me.id}/events${after ? `?after=${after}` : ''}`, ROOT));
  me.es = es;
  const on = (type, fn) => es.addEventListener(type, e => {
    const seq = Number(e.lastEventId);
    if (run !== me || me.es !== es || seq <= me.seq) return;  // never an event twice
    me.seq = seq;
    fn(JSON.parse(e.data));
  });
  on('state', r => {
    me.state = r.state;
    post('state', {run: r});
  });
  on('progress', p => post('progress', p));
  on('output', ev => add(ev.stream, ev.lines, ev.host));
  on('end', r => {
    es.close();  // else the browser reconnects to a finished stream
    me.es = null;
    me.state = r.state;
    post('end', {run: r});
  });
  es.onopen = () => run === me && me.es === es && post('online');
  es.onerror = async () => {
    if (run !== me || me.es !== es) return;
    if (FINAL.has(me.state)) {  // ended without an `end` event: nothing more will come
      es.close();
      me.es = null;
      return post('online');
    }
    post('offline');
    if (es.readyState !== EventSource.CLOSED) return;  // the browser reconnects with Last-Event-ID
    // Refused rather than dropped: does the run exist? Then resume after the last event we have.
    me.es = null;
    const res = await fetch(new URL(`api/runs/${me.id}`, ROOT)).catch(() => null);
    if (run !== me) return;
    if (res?.status === 404) return post('missing', {error: `There is no run ${me.id}.`});
    setTimeout(() => run === me && !me.es && connect(me, me.seq), 2000);
  };
}

function add(stream, lines, host) {
  if (run.host && host !== run.host) return;  // filtered out here, so the page never sees them
  run.queue.push({stream, lines, host, i: 0});
  run.queued += lines.length;
  run.total += lines.length;
  if (run.queued > 2 * run.keep) trim();
  if (run.wanted) give();
  else post('count', {total: run.total, queued: run.queued});
}

// Lines older than the newest `keep` will never be shown: pass over them, feeding only their
// colour codes to the ANSI state so that the lines shown keep the right colours.
function trim() {
  let skip = run.queued - run.keep;
  while (skip > 0) {
    const batch = run.queue[0];
    const end = Math.min(batch.lines.length, batch.i + skip);
    for (let k = batch.i; k < end; k++) run.rows.skip(batch.stream, batch.host, batch.lines[k]);
    skip -= end - batch.i;
    run.queued -= end - batch.i;
    batch.i = end;
    if (batch.i === batch.lines.length) run.queue.shift();
  }
}

// Up to one frame's worth of lines, as HTML rows, to a page that asked for them.
function give() {
  if (!run.queued) return;
  trim();
  const rows = [];
  while (rows.length < run.frame && run.queue.length) {
    const batch = run.queue[0];
    const end = Math.min(batch.lines.length, batch.i + run.frame - rows.length);
    for (let k = batch.i; k < end; k++) rows.push(run.rows.row(batch.stream, batch.host, batch.lines[k]));
    batch.i = end;
    if (batch.i === batch.lines.length) run.queue.shift();
  }
  run.queued -= rows.length;
  run.wanted = false;
  post('lines', {rows, total: run.total, queued: run.queued});
}
