// Pushbutton's page: job list, generated forms, live run view, history. Routes live in the hash:
// #/ (jobs), #/jobs/<id> (form), #/runs/<id> (one run), #/history?job=&state= (past runs).
const $ = window.jQuery;
const MAX_LINES = 5000;    // output lines kept in the DOM: the newest ones
const FRAME_LINES = 2000;  // output lines appended per animation frame
const BLOCK_LINES = 200;   // output lines per DOM block
const FINAL = new Set(['succeeded', 'failed', 'cancelled', 'timed_out', 'interrupted']);
const STATES = {queued: 'Queued', running: 'Running', succeeded: 'Succeeded', failed: 'Failed',
  cancelled: 'Cancelled', timed_out: 'Timed out', interrupted: 'Interrupted'};
const MASK = '********';

const app = {title: 'Pushbutton', jobs: [], byId: {}, active: new Map(), prefill: null};

// ---- small helpers --------------------------------------------------------------------------

async function api(method, path, body) {
  const init = {method, headers: {}};
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch('/api' + path, init);
  } catch {
    return {status: 0, data: {error: 'Pushbutton cannot be reached. Check that it is still running.'}};
  }
  const data = await res.json().catch(() => ({}));
  return {status: res.status, data};
}

function pageError(message) {
  $('#page-error').text(message || '').prop('hidden', !message);
}

const n = x => Number(x).toLocaleString('en-US');
const time = iso => iso ? new Date(iso).toLocaleString() : '–';

function ago(iso) {
  const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (s < 60) return 'just now';
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return new Date(iso).toLocaleDateString();
}

function duration(run) {
  if (!run.started) return run.state === 'queued' ? 'waiting' : '–';
  const ms = Math.max(0, (run.finished ? Date.parse(run.finished) : Date.now()) - Date.parse(run.started));
  const s = Math.floor(ms / 1000);
  if (s < 60) return run.finished ? `${(ms / 1000).toFixed(1)} s` : `${s} s`;
  const pad = v => String(v).padStart(2, '0');
  if (s < 3600) return `${Math.floor(s / 60)} min ${pad(s % 60)} s`;
  return `${Math.floor(s / 3600)} h ${pad(Math.floor(s / 60) % 60)} min`;
}

function shown(value) {
  if (value === null || value === undefined || value === '') return '–';
  if (value === true) return 'yes';
  if (value === false) return 'no';
  return Array.isArray(value) ? value.join(', ') : String(value);
}

const paramsText = params => Object.entries(params || {}).map(([k, v]) => `${k}: ${shown(v)}`).join(' · ');
const badge = state => $('<span>', {class: `badge s-${state}`, text: STATES[state] || state});

// A modal question with two named buttons; resolves true for the first.
function ask(title, text, yes, no, safeDefault = false) {
  const dialog = document.getElementById('ask');
  $('#ask-title').text(title);
  $('#ask-text').text(text);
  $('#ask-yes').text(yes);
  $('#ask-no').text(no);
  dialog.returnValue = '';
  dialog.showModal();
  (safeDefault ? $('#ask-no') : $('#ask-yes')).trigger('focus');
  return new Promise(resolve => $(dialog).one('close', () => resolve(dialog.returnValue === 'yes')));
}

// ---- jobs and live state (one /api/events stream for the whole page) ------------------------

async function loadJobs() {
  const {status, data} = await api('GET', '/jobs');
  if (status !== 200) return pageError(data.error || 'Could not load the jobs.');
  app.title = data.title || 'Pushbutton';
  app.jobs = data.jobs;
  app.byId = Object.fromEntries(data.jobs.map(j => [j.id, j]));
  $('#app-title').text(app.title);
  const chosen = $('#h-job').val();
  $('#h-job').empty().append($('<option>', {value: '', text: 'All jobs'}),
    app.jobs.map(j => $('<option>', {value: j.id, text: j.title}))).val(chosen);
  renderJobs();
}

function jobStatus(job) {
  const mine = [...app.active.values()].filter(r => r.job === job.id);
  const running = mine.filter(r => r.state === 'running').length;
  const queued = mine.filter(r => r.state === 'queued').length;
  const parts = [];
  if (running) parts.push(`${running} running`);
  if (queued) parts.push(`${queued} queued`);
  const last = job.last_run;
  parts.push(last ? `last run ${(STATES[last.state] || last.state).toLowerCase()} ${ago(last.finished || last.created)}`
    : 'never run');
  return {text: parts.join(' · '), state: running ? 'running' : queued ? 'queued' : last ? last.state : 'none'};
}

function renderJobs() {
  const query = $('#search').val().trim().toLowerCase();
  const current = location.hash.match(/^#\/jobs\/([^/?]+)/)?.[1];
  const $list = $('#job-list').empty();
  for (const job of app.jobs) {
    if (query && !`${job.title} ${job.description} ${job.id}`.toLowerCase().includes(query)) continue;
    const status = jobStatus(job);
    $list.append($('<li>').append($('<a>', {href: `#/jobs/${job.id}`, class: 'job'})
      .attr('aria-current', current === decodeURIComponent(job.id) ? 'page' : null)
      .append($('<span>', {class: 'job-title', text: job.title}),
        $('<span>', {class: 'job-desc', text: job.description}),
        $('<span>', {class: `job-status s-${status.state}`, text: status.text}))));
  }
  const none = query && !$list.children().length;
  $('#no-match').text(none ? `No job matches “${query}”.` : '').prop('hidden', !none);
}

let jobsFrame = 0;
const renderJobsSoon = () => { jobsFrame ||= requestAnimationFrame(() => { jobsFrame = 0; renderJobs(); }); };

function listen() {
  const es = new EventSource('/api/events');
  es.addEventListener('ready', e => {
    $('#live-lost').prop('hidden', true);
    app.active = new Map(JSON.parse(e.data).active.map(r => [r.id, r]));
    loadJobs();  // a fresh snapshot: last runs may have changed while we were away
  });
  es.addEventListener('state', e => onRunChange(JSON.parse(e.data)));
  es.onerror = () => {
    $('#live-lost').prop('hidden', false);
    if (es.readyState === EventSource.CLOSED) setTimeout(listen, 3000);
  };
}

function onRunChange(run) {
  const job = app.byId[run.job];
  if (FINAL.has(run.state)) {
    app.active.delete(run.id);
    if (job && (!job.last_run || job.last_run.id <= run.id)) job.last_run = run;
  } else {
    app.active.set(run.id, run);
  }
  renderJobsSoon();
  historyView.update(run);
  if (jobView.id === run.job) jobView.recent();
}

// ---- the job form ---------------------------------------------------------------------------

const fieldId = name => `f-${name}`;

function pythonPattern(pattern) {
  // Python's re.fullmatch in JS terms; a pattern JS cannot read is left to the server.
  try {
    return new RegExp(`^(?:${pattern.replace(/\\A/g, '^').replace(/\\Z/g, '$')})$`);
  } catch {
    return null;
  }
}

function rangeHint(p) {
  if (!['int', 'float', 'date'].includes(p.type)) return '';
  if (p.min !== null && p.max !== null) return `From ${p.min} to ${p.max}.`;
  if (p.min !== null) return p.type === 'date' ? `From ${p.min} on.` : `At least ${p.min}.`;
  if (p.max !== null) return p.type === 'date' ? `Until ${p.max}.` : `At most ${p.max}.`;
  return '';
}

function control(p, value) {
  const id = fieldId(p.name);
  const common = {id, name: p.name};
  switch (p.type) {
    case 'multiline':
      return $('<textarea>', {...common, rows: 4}).val(value ?? '');
    case 'int':
    case 'float':
      return $('<input>', {...common, type: 'number', step: p.type === 'int' ? 1 : 'any', inputmode: 'decimal',
        min: p.min, max: p.max}).val(value ?? '');
    case 'bool':
      return $('<input>', {...common, type: 'checkbox'}).prop('checked', value === true);
    case 'choice': {
      const $s = $('<select>', common);
      if (!p.required || value === null || value === undefined) $s.append($('<option>', {value: '', text: '— choose —'}));
      for (const c of p.choices || []) $s.append($('<option>', {value: c, text: c}));
      return $s.val(value ?? '');
    }
    case 'multichoice': {
      const chosen = new Set(value || []);
      return $('<div>', {class: 'checks'}).append((p.choices || []).map(c => $('<label>').append(
        $('<input>', {type: 'checkbox', name: p.name, value: c}).prop('checked', chosen.has(c)), ' ', c)));
    }
    case 'date':
      return $('<input>', {...common, type: 'date', min: p.min, max: p.max}).val(value ?? '');
    case 'secret':
      return $('<input>', {...common, type: 'password', autocomplete: 'off'}).val(value ?? '');
    default:
      return $('<input>', {...common, type: 'text', autocomplete: 'off'}).val(value ?? '');
  }
}

function field(p, value) {
  const id = fieldId(p.name);
  const help = [p.help, rangeHint(p)].filter(Boolean).join(' ');
  const $f = $('<div>', {class: `field t-${p.type}`, 'data-name': p.name});
  const $label = $('<span>', {text: p.label});
  if (p.required) $label.append(' ', $('<span>', {class: 'req', 'aria-hidden': 'true', text: '*'}));
  const $help = help ? $('<p>', {class: 'help', id: `h-${p.name}`, text: help}) : null;
  const $err = $('<p>', {class: 'error', id: `e-${p.name}`, 'aria-live': 'polite'});
  const described = [$help && `h-${p.name}`, `e-${p.name}`].filter(Boolean).join(' ');
  const $c = control(p, value);
  if (p.type === 'multichoice') {
    $f.append($('<fieldset>', {'aria-describedby': described}).append($('<legend>').append($label), $c), $help, $err);
  } else if (p.type === 'bool') {
    $c.attr('aria-describedby', described);
    $f.append($('<label>', {for: id, class: 'inline'}).append($c, ' ', $label), $help, $err);
  } else {
    $c.attr({'aria-describedby': described, 'aria-required': p.required ? 'true' : null});
    $f.append($('<label>', {for: id}).append($label), $c, $help, $err);
  }
  return $f;
}

function readValue(p, $form) {
  if (p.type === 'multichoice') return $form.find(`[name="${p.name}"]:checked`).map((_, el) => el.value).get();
  const el = document.getElementById(fieldId(p.name));
  return p.type === 'bool' ? el.checked : el.value;
}

// The page's own check, as the server will judge it; '' when fine.
function problem(p, value) {
  const el = document.getElementById(fieldId(p.name));
  if (el?.validity?.badInput) return p.type === 'date' ? 'Enter a full date.' : 'Enter a number.';
  const empty = value === '' || (Array.isArray(value) && !value.length);
  if (empty) return p.required && p.type !== 'bool' ? 'Required.' : '';
  if (p.type === 'int' && !/^\s*[+-]?\d+\s*$/.test(value)) return 'Enter a whole number.';
  if (['int', 'float'].includes(p.type)) {
    if (!Number.isFinite(Number(value))) return 'Enter a number.';
    if (p.min !== null && Number(value) < p.min) return `Must be at least ${p.min}.`;
    if (p.max !== null && Number(value) > p.max) return `Must be at most ${p.max}.`;
  }
  if (p.type === 'date') {
    if (p.min && value < p.min) return `Must be ${p.min} or later.`;
    if (p.max && value > p.max) return `Must be ${p.max} or earlier.`;
  }
  if (p.pattern && typeof value === 'string') {
    const re = pythonPattern(p.pattern);
    if (re && !re.test(value)) return p.help ? `Not in the expected form. ${p.help}.` : `Must match ${p.pattern}.`;
  }
  return '';
}

function showProblem(name, message) {
  const $f = $(`#fields .field[data-name="${name}"]`);
  const text = message ? message.charAt(0).toUpperCase() + message.slice(1) : '';
  $f.toggleClass('invalid', Boolean(text)).find('.error').text(text);
  $f.find('input, select, textarea').attr('aria-invalid', text ? 'true' : null);
}

const jobView = {
  id: null,
  open(id) {
    const job = app.byId[id];
    this.id = id;
    if (!job) return pageError(`There is no job “${id}”.`);
    document.title = `${job.title} — ${app.title}`;
    $('#job-title').text(job.title);
    $('#job-desc').text(job.description).prop('hidden', !job.description);
    $('#form-error').prop('hidden', true);
    const given = app.prefill?.job === id ? app.prefill : null;
    app.prefill = null;
    $('#fields').empty().append(job.params.map(p => field(p, given && p.name in given.params ? given.params[p.name] : p.default)));
    if (!job.params.length) $('#fields').append($('<p>', {class: 'muted', text: 'This job has no settings.'}));
    for (const [name, message] of Object.entries(given?.errors || {})) showProblem(name, message);
    this.recent();
  },
  check(p) {
    const message = problem(p, readValue(p, $('#job-form')));
    showProblem(p.name, message);
    return message;
  },
  async submit() {
    const job = app.byId[this.id];
    if (!job || $('#run-button').prop('disabled')) return;  // not twice while one is starting
    const $form = $('#job-form');
    const bad = job.params.filter(p => this.check(p));
    if (bad.length) {
      $('#form-error').text('Please correct the marked fields.').prop('hidden', false);
      return $(`#${fieldId(bad[0].name)}, [data-name="${bad[0].name}"] input`).first().trigger('focus');
    }
    $('#form-error').prop('hidden', true);
    const params = Object.fromEntries(job.params.map(p => [p.name, readValue(p, $form)]));
    if (job.confirm) {
      const text = job.confirm.replace(/\{\{|\}\}|\{([A-Za-z_]\w*)\}/g, (m, name) => !name ? m[0]
        : job.params.find(p => p.name === name)?.type === 'secret' ? MASK : shown(params[name]));
      if (!await ask(`Run “${job.title}”?`, text, 'Yes, run it', 'Go back')) return;
    }
    const $button = $('#run-button').prop('disabled', true);
    const {status, data} = await api('POST', `/jobs/${encodeURIComponent(job.id)}/runs`, {params});
    $button.prop('disabled', false);
    if (status === 202) return void (location.hash = `#/runs/${data.run.id}`);
    const fields = data.fields || {};
    const unplaced = [];
    for (const [name, message] of Object.entries(fields)) {
      if (job.params.some(p => p.name === name)) showProblem(name, message);
      else unplaced.push(`${name || 'parameters'}: ${message}`);
    }
    const first = job.params.find(p => p.name in fields);
    $('#form-error').text(unplaced.join(' ') || (first ? 'Please correct the marked fields.' : data.error || 'The run could not start.'))
      .prop('hidden', false);
    if (first) $(`#${fieldId(first.name)}, [data-name="${first.name}"] input`).first().trigger('focus');
  },
  async recent() {
    const id = this.id;
    const {status, data} = await api('GET', `/runs?job=${encodeURIComponent(id)}&limit=5`);
    if (status !== 200 || id !== this.id) return;
    $('#job-runs').empty().append(data.runs.length ? data.runs.map(r => $('<li>').append(
      $('<a>', {href: `#/runs/${r.id}`, text: `Run ${r.id}`}), ' ', badge(r.state), ' ',
      $('<span>', {class: 'muted', text: `${time(r.created)} · ${paramsText(r.params)}`})))
      : $('<li>', {class: 'muted', text: 'No runs yet.'}));
  },
};

// ---- one run: status, progress, output ------------------------------------------------------

const log = document.getElementById('log');
const reader = new Worker('/assets/run-stream.js', {type: 'module'});
reader.onmessage = ({data}) => runView.message(data);
reader.onerror = e => setTimeout(() => { throw new Error(`output reader: ${e.message}`); });

const runView = {
  run: null, gen: 0, rows: [], total: 0, queued: 0, inDom: 0, asked: false, follow: true, frame: 0, autoTop: 0,
  timer: 0,

  open(id) {
    this.close();
    Object.assign(this, {run: {id, job: '', state: '', params: {}}, rows: [], total: 0, queued: 0, inDom: 0,
      asked: false, follow: true, autoTop: 0});
    log.textContent = '';
    $('#run-title').text(`Run ${id}`);
    $('#run-state, #run-started, #run-elapsed, #run-exit, #run-params, #run-note, #run-message').text('');
    $('#run-progress, #log-notice, #follow, #stop, #rerun, #run-conn').prop('hidden', true);
    $('#log-full').attr('href', `/api/runs/${id}/log`);
    reader.postMessage({type: 'open', id, gen: ++this.gen, keep: MAX_LINES, frame: FRAME_LINES});
    this.pull();
    this.timer = setInterval(() => this.run.started && !this.run.finished && $('#run-elapsed').text(duration(this.run)), 1000);
  },

  close() {
    if (this.run) reader.postMessage({type: 'close'});
    this.gen++;
    cancelAnimationFrame(this.frame);
    this.frame = 0;
    clearInterval(this.timer);
    this.run = null;
  },

  message(m) {
    if (m.gen !== this.gen) return;  // from a run no longer shown
    if (m.type === 'state') this.show(m.run);
    else if (m.type === 'end') {
      this.show(m.run);
      $('#run-conn').prop('hidden', true);
    } else if (m.type === 'progress') this.progress(m.percent, m.message);
    else if (m.type === 'online' || m.type === 'offline') $('#run-conn').prop('hidden', m.type === 'online');
    else if (m.type === 'missing') pageError(m.error);
    else {  // lines, or the count of lines waiting in the reader
      Object.assign(this, {total: m.total, queued: m.queued, asked: this.asked && m.type !== 'lines'});
      if (m.rows) this.rows.push(...m.rows);
      if (this.follow) this.frame ||= requestAnimationFrame(() => this.flush());
      this.notice();
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
    $('#run-job-link').attr('href', `#/jobs/${run.job}`).text(`← ${name}`);
    $('#run-state').attr('class', `badge s-${run.state}`).text(STATES[run.state] || run.state);
    $('#run-started').text(run.started ? `${time(run.started)}` : run.state === 'queued' ? 'Waiting for a free slot' : '–');
    $('#run-elapsed').text(duration(run));
    $('#run-exit').text(run.exit_code ?? '–');
    $('#run-params').text(paramsText(run.params) || 'none');
    $('#stop').prop('hidden', FINAL.has(run.state));
    $('#rerun').prop('hidden', !FINAL.has(run.state));
    if (run.progress !== null) this.progress(run.progress, run.message);
  },

  progress(percent, message) {
    $('#run-progress').prop('hidden', false);
    $('#run-bar').val(percent).attr('aria-valuetext', `${Math.round(percent)}%${message ? `: ${message}` : ''}`);
    $('#run-message').text(`${Math.round(percent)}%${message ? ` · ${message}` : ''}`);
  },

  // One frame: the rows the reader sent go in, in blocks of BLOCK_LINES (the browser skips laying
  // out blocks out of view: content-visibility); the oldest lines leave so MAX_LINES remain.
  flush() {
    this.frame = 0;
    if (!this.run || !this.follow) return;
    const rows = this.rows.splice(0, FRAME_LINES);
    let i = 0;
    const last = log.lastElementChild;
    if (last && last.childElementCount < BLOCK_LINES) {
      i = BLOCK_LINES - last.childElementCount;
      last.insertAdjacentHTML('beforeend', rows.slice(0, i).join(''));
      last.style.setProperty('--lines', last.childElementCount);
    }
    const blocks = [];
    for (; i < rows.length; i += BLOCK_LINES) {
      const part = rows.slice(i, i + BLOCK_LINES);
      blocks.push(`<div class="block" style="--lines:${part.length}">${part.join('')}</div>`);
    }
    log.insertAdjacentHTML('beforeend', blocks.join(''));
    this.inDom += rows.length;
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
    }
  },

  resume() {
    this.follow = true;
    $('#follow').prop('hidden', true);
    log.scrollTop = log.scrollHeight;
    this.autoTop = log.scrollTop;
    if (this.rows.length) this.frame ||= requestAnimationFrame(() => this.flush());
    else this.pull();
  },

  async stop() {
    const run = this.run;
    const yes = await ask('Stop this run?',
      'Stopping tells the job\'s programs to end now. Anything they are in the middle of may be left ' +
      'half-done; if they do not end within a few seconds they are ended by force. The run will be ' +
      'recorded as cancelled. You can start the job again afterwards.', 'Stop the run', 'Keep it running', true);
    if (!yes || run !== this.run) return;
    const {status, data} = await api('POST', `/runs/${run.id}/cancel`);
    $('#run-note').text(status === 202 ? 'Stopping…' : data.error || 'Could not stop the run.');
  },

  async copy() {
    const res = await fetch(`/api/runs/${this.run.id}/log`).catch(() => null);
    if (!res?.ok) return void $('#run-note').text('Could not fetch the log.');
    const text = await res.text();
    try {
      await navigator.clipboard.writeText(text);
    } catch {  // no clipboard API outside a secure context: the old way
      const area = $('<textarea>', {'aria-hidden': 'true', class: 'offscreen'}).val(text).appendTo('body');
      area[0].select();
      document.execCommand('copy');
      area.remove();
    }
    $('#run-note').text(`Copied ${n(text ? text.split('\n').length - 1 : 0)} lines.`);
  },

  download() {
    const a = document.createElement('a');
    a.href = `/api/runs/${this.run.id}/log`;
    a.download = '';
    a.click();
  },
};

async function rerun(run) {
  const {status, data} = await api('POST', `/runs/${run.id}/rerun`, {params: {}});
  if (status === 202) return void (location.hash = `#/runs/${data.run.id}`);
  if (status === 400 && data.fields) {  // a secret must be typed again: the form, filled in
    const params = Object.fromEntries(Object.entries(run.params).filter(([, v]) => v !== MASK));
    app.prefill = {job: run.job, params, errors: data.fields};
    return void (location.hash = `#/jobs/${run.job}`);
  }
  pageError(data.error || 'Could not start the run again.');
}

// ---- history ----------------------------------------------------------------------------------

const historyView = {
  filter: {job: '', state: ''},
  last: null,

  async open(query) {
    this.filter = {job: query.get('job') || '', state: query.get('state') || ''};
    $('#h-job').val(this.filter.job);
    $('#h-state').val(this.filter.state);
    $('#history-rows').empty();
    this.last = null;
    document.title = `History — ${app.title}`;
    await this.more();
  },

  async more() {
    const q = new URLSearchParams({limit: 50});
    if (this.filter.job) q.set('job', this.filter.job);
    if (this.filter.state) q.set('state', this.filter.state);
    if (this.last) q.set('before', this.last);
    const wanted = JSON.stringify(this.filter);
    const {status, data} = await api('GET', `/runs?${q}`);
    if (status !== 200) return pageError(data.error);
    if (wanted !== JSON.stringify(this.filter)) return;
    $('#history-rows').append(data.runs.map(r => this.row(r)));
    if (data.runs.length) this.last = data.runs.at(-1).id;
    $('#history-more').prop('hidden', data.runs.length < 50);
    $('#history-empty').prop('hidden', $('#history-rows').children().length > 0);
  },

  row(r) {
    const job = app.byId[r.job];
    return $('<tr>', {'data-run': r.id}).append(
      $('<td>').append($('<a>', {href: `#/runs/${r.id}`, text: `Run ${r.id}`})),
      $('<td>', {text: job ? job.title : r.job, 'data-label': 'Job'}),
      $('<td>', {text: time(r.created), 'data-label': 'Started'}),
      $('<td>', {class: 'params', text: paramsText(r.params) || '–', 'data-label': 'Parameters'}),
      $('<td>', {'data-label': 'Result'}).append(badge(r.state), r.exit_code !== null ? ` exit ${r.exit_code}` : ''),
      $('<td>', {text: duration(r), 'data-label': 'Duration'}),
      $('<td>').append(FINAL.has(r.state) ? $('<button>', {type: 'button', class: 'small', text: 'Run again',
        'aria-label': `Run again (run ${r.id})`}).on('click', () => rerun(r)) : ''));
  },

  update(run) {
    if ($('#view-history').prop('hidden')) return;
    const $old = $(`#history-rows tr[data-run="${run.id}"]`);
    if ($old.length) return void $old.replaceWith(this.row(run));
    const newest = Number($('#history-rows tr').first().data('run') || 0);
    const fits = (!this.filter.job || this.filter.job === run.job) && (!this.filter.state || this.filter.state === run.state);
    if (fits && run.id > newest) {
      $('#history-rows').prepend(this.row(run));
      $('#history-empty').prop('hidden', true);
    }
  },
};

// ---- routing --------------------------------------------------------------------------------

function route() {
  const [path, search] = location.hash.replace(/^#/, '').split('?');
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  const view = parts[0] === 'jobs' && parts[1] ? 'job' : parts[0] === 'runs' && /^\d+$/.test(parts[1] || '') ? 'run'
    : parts[0] === 'history' ? 'history' : 'home';
  pageError('');
  if (view !== 'run') runView.close();
  if (view !== 'job') jobView.id = null;
  $('.view').prop('hidden', true);
  $(`#view-${view}`).prop('hidden', false);
  $('body').toggleClass('at-home', view === 'home');
  document.title = app.title;
  if (view === 'job') jobView.open(parts[1]);
  if (view === 'run') runView.open(Number(parts[1]));
  if (view === 'history') historyView.open(new URLSearchParams(search));
  renderJobs();
  if (view !== app.view && app.view !== undefined) $(`#view-${view} h2`).first().trigger('focus');
  app.view = view;
}

$(async () => {
  for (const [state, label] of Object.entries(STATES)) $('#h-state').append($('<option>', {value: state, text: label}));
  $('#search').on('input', renderJobs);
  $('#job-form').on('submit', e => { e.preventDefault(); jobView.submit(); });
  $('#fields').on('input change', 'input, select, textarea', e => {  // checked as you type
    const p = app.byId[jobView.id]?.params.find(x => x.name === e.target.name);
    if (p) jobView.check(p);
  });
  $('#stop').on('click', () => runView.stop());
  $('#rerun').on('click', () => rerun(runView.run));
  $('#copy').on('click', () => runView.copy());
  $('#download').on('click', () => runView.download());
  $('#follow').on('click', () => runView.resume());
  $(log).on('scroll', () => runView.onScroll());
  $('#history-filters').on('change', () => {
    const q = new URLSearchParams();
    if ($('#h-job').val()) q.set('job', $('#h-job').val());
    if ($('#h-state').val()) q.set('state', $('#h-state').val());
    location.hash = `#/history${q.size ? `?${q}` : ''}`;
  });
  $('#history-more').on('click', () => historyView.more());
  setInterval(renderJobsSoon, 30000);
  await loadJobs();
  window.addEventListener('hashchange', route);
  route();
  listen();
});
