// One run: status, progress, output (read by the run-stream worker), Stop, Run again, the log.
import { $, app, FINAL, MASK, STATES, copyText, duration, mayRun, mayStop, n, pageError, paramsText, time } from './util.js';
import { api } from './api.js';
import { ask, startRun } from './confirm.js';
import { approvals } from './approvals.js';
import { hostsView } from './hosts.js';
import { artifactsView } from './artifacts.js';
import { cancelDraw, drawSoon } from './frames.js';

const MAX_LINES = 5000;    // output lines kept in the DOM: the newest ones
const FRAME_LINES = 2000;  // output lines the reader hands over at a time
const FRAME_MS = 8;        // main-thread time per animation frame for new output (then the next frame)
const BLOCK_LINES = 200;   // output lines per DOM block
const STOPPING = 'Stopping…';  // the note while a cancelled run ends; cleared once it has

const log = document.getElementById('log');
const reader = new Worker(new URL('run-stream.js', import.meta.url), {type: 'module'});
reader.onmessage = ({data}) => runView.message(data);
reader.onerror = e => setTimeout(() => { throw new Error(`output reader: ${e.message}`); });

// 256-colour and true-colour spans carry their colour as data-fg/data-bg="R,G,B" (the page's CSP
// refuses style attributes in HTML): set them through the CSSOM, once.
function paint(root) {
  for (const el of root.querySelectorAll('[data-fg], [data-bg]')) {
    if (el.dataset.fg) el.style.color = `rgb(${el.dataset.fg})`;
    if (el.dataset.bg) el.style.backgroundColor = `rgb(${el.dataset.bg})`;
    el.removeAttribute('data-fg');
    el.removeAttribute('data-bg');
  }
}

function block(rows) {
  const div = document.createElement('div');
  div.className = 'block';
  div.insertAdjacentHTML('beforeend', rows.join(''));  // rows: HTML the worker built, text escaped
  div.style.setProperty('--lines', rows.length);
  return div;
}

export const runView = {
  run: null, gen: 0, rows: [], total: 0, queued: 0, inDom: 0, asked: false, follow: true, frame: 0, autoTop: 0,
  timer: 0, ending: null,

  open(id) {
    this.close();
    Object.assign(this, {run: {id, job: '', state: '', params: {}}, rows: [], total: 0, queued: 0, inDom: 0,
      asked: false, follow: true, autoTop: 0});
    log.textContent = '';
    $('#run-title').text(`Run ${id}`);
    $('#run-state, #run-started, #run-elapsed, #run-exit, #run-params, #run-note, #run-message, #run-user').text('');
    $('#run-progress, #log-notice, #follow, #stop, #rerun, #run-conn, #run-stopped, #run-approval').prop('hidden', true);
    $('#approval-comment').val('');
    $('#approval-note').text('');
    $('#log-full').attr('href', `api/runs/${id}/log`);
    hostsView.reset();
    hostsView.onFilter = host => this.filter(host);
    reader.postMessage({type: 'open', id, gen: ++this.gen, keep: MAX_LINES, frame: FRAME_LINES});
    this.pull();
    this.timer = setInterval(() => this.run.started && !this.run.finished && $('#run-elapsed').text(duration(this.run)), 1000);
  },

  // Only one host's output (or all, for ''): the worker reads the run's events again from the
  // start and keeps that host's lines; the lines shown so far leave.
  filter(host) {
    if (!this.run) return;
    this.unschedule();
    Object.assign(this, {rows: [], total: 0, queued: 0, inDom: 0, asked: false, follow: true, autoTop: 0, ending: null});
    log.textContent = '';
    $('#log-notice, #follow').prop('hidden', true);
    reader.postMessage({type: 'open', id: this.run.id, gen: ++this.gen, keep: MAX_LINES, frame: FRAME_LINES, host});
    this.pull();
  },

  close() {
    if (this.run) reader.postMessage({type: 'close'});
    this.gen++;
    this.unschedule();
    cancelDraw('run');
    clearInterval(this.timer);
    this.run = this.ending = null;
    approvals.leaveRun();
  },

  message(m) {
    if (m.gen !== this.gen) return;  // from a run no longer shown
    if (m.type === 'state' || m.type === 'end') this.state(m);
    else if (m.type === 'progress') this.progress(m.percent, m.message);
    else if (m.type === 'online' || m.type === 'offline') $('#run-conn').prop('hidden', m.type === 'online');
    else if (m.type === 'missing') pageError(m.error);
    else {  // lines, or the count of lines waiting in the reader
      Object.assign(this, {total: m.total, queued: m.queued, asked: this.asked && m.type !== 'lines'});
      if (m.rows) this.rows.push(...m.rows);
      if (this.follow && this.rows.length) this.later();
      else this.pull();
      this.notice();
      this.drained();
    }
  },

  // A run's new state: only the newest is drawn. A final one, while the view follows the output,
  // waits for the lines before it (in the reader or not yet drawn): "Succeeded" comes with the
  // last lines, never before them.
  state(m) {
    if (m.type === 'end') $('#run-conn').prop('hidden', true);
    cancelDraw('run');
    this.ending = null;
    const final = FINAL.has(m.run.state);
    if (final && this.follow && (this.rows.length || this.queued)) this.ending = m.run;
    else if (final) this.show(m.run);
    else drawSoon('run', () => this.show(m.run));
  },

  // All output drawn (or the view no longer follows it): a final state waiting for it is shown.
  drained() {
    if (this.ending && (!this.follow || (!this.rows.length && !this.queued))) {
      const run = this.ending;
      this.ending = null;
      this.show(run);
    }
  },

  pull() {
    if (this.follow && !this.asked) {
      this.asked = true;
      reader.postMessage({type: 'pull'});
    }
  },

  show(run) {
    const first = !this.run.job;
    this.run = run;
    const job = app.byId[run.job];
    const name = job ? job.title : run.job;
    $('#run-title').text(`${name} — run ${run.id}`);
    if (first) document.title = `Run ${run.id}: ${name} — ${app.title}`;
    $('#run-job-link').attr('href', `#/jobs/${encodeURIComponent(run.job)}`).text(`← ${name}`);
    $('#run-state').attr('class', `badge s-${run.state}`).text(STATES[run.state] || run.state);
    $('#run-started').text(run.started ? `${time(run.started)}` : run.state === 'queued' ? 'Waiting for a free slot'
      : run.state === 'awaiting_approval' ? 'Waiting for approval' : '–');
    $('#run-elapsed').text(duration(run));
    $('#run-exit').text(run.exit_code ?? '–');
    $('#run-params').text(paramsText(run.params, job) || 'none');
    $('#run-user').text(run.user || '–');
    $('#run-stopped').prop('hidden', !run.stopped_by);
    $('#run-stopped-by').text(run.stopped_by || '');
    if (FINAL.has(run.state) && $('#run-note').text() === STOPPING) $('#run-note').text('');  // it has stopped
    if (FINAL.has(run.state) && document.activeElement === $('#stop')[0]) $('#run-title').trigger('focus');
    $('#stop').prop('hidden', FINAL.has(run.state) || !mayStop(run));
    $('#rerun').prop('hidden', !FINAL.has(run.state) || !mayRun(job));
    if (run.progress !== null) this.progress(run.progress, run.message);
    else this.note(run.message);
    approvals.panel(run);
    hostsView.update(run.hosts);
    artifactsView.update(run);
  },

  progress(percent, message) {
    $('#run-progress, #run-bar').prop('hidden', false);
    $('#run-bar').val(percent).attr('aria-valuetext', `${Math.round(percent)}%${message ? `: ${message}` : ''}`);
    $('#run-message').text(`${Math.round(percent)}%${message ? ` · ${message}` : ''}`);
  },

  // A message without progress: why a run ended as it did ("history could not be written: ...").
  note(message) {
    $('#run-progress').prop('hidden', !message);
    $('#run-bar').prop('hidden', true);
    $('#run-message').text(message || '');
  },

  // One frame: the rows the reader sent go in, in blocks of BLOCK_LINES (the browser skips laying
  // out blocks out of view: content-visibility), until FRAME_MS of this frame are spent, so that
  // the browser's own work for the frame stays small too; the rest waits for the next frame. The
  // oldest lines leave so MAX_LINES remain.
  flush() {
    this.frame = 0;
    if (!this.run || !this.follow) return;
    const start = performance.now();
    let added = 0;
    do {
      const last = log.lastElementChild;
      if (last && last.childElementCount < BLOCK_LINES) {
        const rows = this.rows.splice(0, BLOCK_LINES - last.childElementCount);
        last.insertAdjacentHTML('beforeend', rows.join(''));
        last.style.setProperty('--lines', last.childElementCount);
        paint(last);
        added += rows.length;
      } else {
        const div = block(this.rows.splice(0, BLOCK_LINES));
        paint(div);
        log.append(div);
        added += div.childElementCount;
      }
    } while (this.rows.length && performance.now() - start < FRAME_MS);
    this.inDom += added;
    for (let extra = this.inDom - MAX_LINES; extra > 0;) {
      const first = log.firstElementChild;
      const lines = first.childElementCount;
      if (lines <= extra) {
        first.remove();
        extra -= lines;
      } else {
        const range = document.createRange();
        range.setStart(first, 0);
        range.setEnd(first, extra);
        range.deleteContents();
        first.style.setProperty('--lines', lines - extra);
        extra = 0;
      }
    }
    this.inDom = Math.min(this.inDom, MAX_LINES);
    log.scrollTop = log.scrollHeight;
    this.autoTop = log.scrollTop;
    this.notice();
    if (this.rows.length) this.frame = requestAnimationFrame(() => this.flush());
    else this.pull();
    this.drained();
  },

  // A trickle of new output is drawn paced (frames.js); a flood (a block's worth waiting, or more
  // in the reader) in the next frame, and then frame after frame (flush).
  later() {
    if (this.frame) return;
    if (this.rows.length >= BLOCK_LINES || this.queued >= BLOCK_LINES) {
      cancelDraw('output');
      this.frame = requestAnimationFrame(() => this.flush());
    } else drawSoon('output', () => this.flush());
  },

  unschedule() {
    cancelDraw('output');
    cancelAnimationFrame(this.frame);
    this.frame = 0;
  },

  notice() {
    const waiting = this.rows.length + this.queued;
    if (this.total - this.inDom - waiting > 0) {
      $('#log-notice').prop('hidden', false);
      $('#log-notice-text').text(`Showing the newest ${n(this.inDom)} of ${n(this.total)} lines.`);
    }
    if (!this.follow) $('#follow').text(waiting ? `Follow output (${n(waiting)} new lines)` : 'Follow output');
  },

  onScroll() {
    if (!this.run) return;
    const atEnd = log.scrollHeight - log.scrollTop - log.clientHeight < 24;
    if (atEnd && !this.follow) this.resume();
    else if (!atEnd && this.follow && log.scrollTop < this.autoTop - 4) {
      this.follow = false;
      $('#follow').prop('hidden', false);
      this.notice();
      this.drained();
    }
  },

  resume() {
    this.follow = true;
    $('#follow').prop('hidden', true);
    log.scrollTop = log.scrollHeight;
    this.autoTop = log.scrollTop;
    if (this.rows.length) this.later();
    else this.pull();
  },

  async stop() {
    const run = this.run;
    const yes = await ask('Stop this run?',
      'Stopping tells the job\'s programs to end now. Anything they are in the middle of may be left ' +
      'half-done; if they do not end within a few seconds they are ended by force. The run will be ' +
      'recorded as cancelled. You can start the job again afterwards.', 'Stop the run', 'Keep it running', true);
    // By id: each state event replaces this.run, and one may come while the dialog is open.
    if (!yes || run.id !== this.run.id) return;
    const {status, data} = await api('POST', `/runs/${run.id}/cancel`);
    $('#run-note').text(status === 202 ? (FINAL.has(this.run.state) ? '' : STOPPING) : data.error || 'Could not stop the run.');
  },

  async copy() {
    const res = await fetch(`api/runs/${this.run.id}/log`).catch(() => null);
    if (!res?.ok) return void $('#run-note').text('Could not fetch the log.');
    const text = await res.text();
    await copyText(text);
    $('#run-note').text(`Copied ${n(text ? text.split('\n').length - 1 : 0)} lines.`);
  },

  download() {
    const a = document.createElement('a');
    a.href = `api/runs/${this.run.id}/log`;
    a.download = '';
    a.click();
  },
};

// Run again with the same parameters. A job with `confirm` is asked again (the server's question);
// a run with secrets goes back to its form, filled in, for them to be typed again.
export async function rerun(run) {
  const job = app.byId[run.job];
  const res = await startRun(`/runs/${run.id}/rerun`, {params: {}}, job ? job.title : run.job);
  if (!res) return;
  const {status, data} = res;
  if (status === 202) return void (location.hash = `#/runs/${data.run.id}`);
  if (status === 400 && data.fields) {
    const params = Object.fromEntries(Object.entries(run.params).filter(([, v]) => v !== MASK));
    app.prefill = {job: run.job, params, errors: data.fields};
    return void (location.hash = `#/jobs/${encodeURIComponent(run.job)}`);
  }
  pageError(data.error || 'Could not start the run again.');
}
