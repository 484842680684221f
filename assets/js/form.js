// The job form, generated from the job's parameters; checked as you type, as the server will judge.
// Labels, help, choices and defaults come from jobs.ini: they go into the DOM as text and values.
import { $, app, MASK, badge, mayRun, pageError, paramsText, showPreview, shown, time } from './util.js';
import { api } from './api.js';
import { askToRun, startRun } from './confirm.js';
import { described, fileControl, fileHint, fileProblem, fileValue, startBody } from './upload.js';
import { loadChoices } from './choices.js';

const fieldId = name => `f-${name}`;
const fieldOf = name => $('#fields .field').filter((_, el) => el.dataset.name === name);

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
        $('<input>', {type: 'checkbox', name: p.name, value: c}).prop('checked', chosen.has(c)), ' ',
        $('<span>', {text: c}))));
    }
    case 'date':
      return $('<input>', {...common, type: 'date', min: p.min, max: p.max}).val(value ?? '');
    case 'secret':
      return $('<input>', {...common, type: 'password', autocomplete: 'off'}).val(value ?? '');
    case 'file':
      return fileControl(p, common);  // a file is chosen again each time: never filled in
    default:
      return $('<input>', {...common, type: 'text', autocomplete: 'off'}).val(value ?? '');
  }
}

function field(p, value) {
  const id = fieldId(p.name);
  const help = [p.help, rangeHint(p), fileHint(p)].filter(Boolean).join(' ');
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

function readValue(p) {
  if (p.type === 'multichoice') return fieldOf(p.name).find('input:checked').map((_, el) => el.value).get();
  const el = document.getElementById(fieldId(p.name));
  if (p.type === 'file') return fileValue(el);
  return p.type === 'bool' ? el.checked : el.value;
}

// The page's own check, as the server will judge it; '' when fine.
function problem(p, value) {
  const el = document.getElementById(fieldId(p.name));
  if (el?.validity?.badInput) return p.type === 'date' ? 'Enter a full date.' : 'Enter a number.';
  const empty = value === '' || (Array.isArray(value) && !value.length);
  if (empty) return p.required && p.type !== 'bool' ? 'Required.' : '';
  if (p.type === 'file') return fileProblem(p, value);
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
  const $f = fieldOf(name);
  const text = message ? message.charAt(0).toUpperCase() + message.slice(1) : '';
  $f.toggleClass('invalid', Boolean(text)).find('.error').text(text);
  $f.find('input, select, textarea').attr('aria-invalid', text ? 'true' : null);
}

const focusField = name => fieldOf(name).find('input, select, textarea').first().trigger('focus');

// The job's confirm question with the form's values in it (secrets masked), as the server fills it.
const question = (job, params) => job.confirm.replace(/\{\{|\}\}|\{([A-Za-z_]\w*)\}/g, (m, name) => !name ? m[0]
  : job.params.find(p => p.name === name)?.type === 'secret' ? MASK : shown(params[name]));

const KEPT_DRAFTS = 'pushbutton-drafts';  // sessionStorage: drafts across a reload (saveDrafts)
const PREVIEW_DELAY = 300;  // ms after the last keystroke before asking the server what would run

export const jobView = {
  id: null,
  preview: null,  // what the form's values would run (api/jobs/<id>/preview), null while invalid
  previewTimer: 0,
  previewSeq: 0,
  open(id) {
    this.keepDraft();
    const job = app.byId[id];
    this.id = id;
    $('#job-form').prop('hidden', !job);
    if (!job) {  // nothing of the job shown before may stay: its Run button would do nothing
      $('#job-title').text('');
      $('#job-desc').text('').prop('hidden', true);
      $('#fields, #job-runs').empty();
      return pageError(`There is no job “${id}”.`);
    }
    document.title = `${job.title} — ${app.title}`;
    $('#job-title').text(job.title);
    $('#job-desc').text(job.description).prop('hidden', !job.description);
    $('#form-error').prop('hidden', true);
    const given = app.prefill?.job === id ? app.prefill : this.drafts[id] ? {params: this.drafts[id]} : null;
    app.prefill = null;
    $('#fields').empty().append(job.params.map(p => field(p, given && p.name in given.params ? given.params[p.name] : p.default)));
    if (!job.params.length) $('#fields').append($('<p>', {class: 'muted', text: 'This job has no settings.'}));
    for (const [name, message] of Object.entries(given?.errors || {})) showProblem(name, message);
    if (given?.errors) $('#form-error').text('Nothing was started: fill in the marked fields again.').prop('hidden', false);
    // A viewer sees the job's settings and runs, without a Run button the server would refuse.
    $('#run-button').prop('hidden', !mayRun(job));
    $('.legend').prop('hidden', !mayRun(job) || !job.params.some(p => p.required));  // only where a * is
    $('#run-denied').prop('hidden', mayRun(job));
    $('#fields').find('input, select, textarea').prop('disabled', !mayRun(job));
    const wanted = Object.fromEntries(job.params.map(p => [p.name, given && p.name in given.params ? given.params[p.name] : p.default]));
    loadChoices(job, wanted, readValue, () => this.schedulePreview());  // lists from commands, after render
    this.showPreview(null);
    this.schedulePreview();
    this.recent();
  },
  // What was typed on a job's form, kept while the page lives, so that a look at a run and Back
  // (or another job and back) finds it again. Never a secret or a file.
  drafts: {},
  // Across the reload that follows a session that ended (main.js: signed out elsewhere, expired
  // while typing): kept in this tab only, and given back only to the same user signing in again.
  saveDrafts(user) {
    this.keepDraft();
    try { sessionStorage.setItem(KEPT_DRAFTS, JSON.stringify({user, drafts: this.drafts})); } catch { /* storage off */ }
  },
  restoreDrafts(user) {
    try {
      const kept = JSON.parse(sessionStorage.getItem(KEPT_DRAFTS) || 'null');
      if (kept && kept.user === user) this.drafts = kept.drafts || {};
      sessionStorage.removeItem(KEPT_DRAFTS);
    } catch { /* unreadable or off: nothing to give back */ }
  },
  keepDraft() {
    const job = app.byId[this.id];
    if (!job || !$('#fields .field').length) return;
    this.drafts[job.id] = Object.fromEntries(job.params.filter(p => p.type !== 'secret' && p.type !== 'file')
      .map(p => [p.name, readValue(p)]));
  },
  // The live preview under the fields: asked for once typing pauses; nothing shown while the
  // values are invalid (the fields say why) or the server has no preview. What the server refuses
  // and the page's own check let through (a secret too short, a file of another type) is said
  // at its field now, not only once Run is pressed.
  schedulePreview() {
    clearTimeout(this.previewTimer);
    this.previewTimer = setTimeout(() => this.previewNow(), PREVIEW_DELAY);
  },
  async previewNow() {
    clearTimeout(this.previewTimer);
    const job = app.byId[this.id];
    if (!job) return null;
    const seq = ++this.previewSeq;
    const params = described(Object.fromEntries(job.params.map(p => [p.name, readValue(p)])));
    const {status, data} = await api('POST', `/jobs/${encodeURIComponent(job.id)}/preview`, {params});
    if (seq !== this.previewSeq || this.id !== job.id) return this.preview;  // a newer one was asked for
    this.showPreview(status === 200 ? data : null);
    for (const p of status === 400 && data.fields ? job.params : []) {
      const value = readValue(p);
      const filled = value !== '' && value !== null && value !== undefined && !(Array.isArray(value) && !value.length);
      if (data.fields[p.name] && filled && !problem(p, value)) showProblem(p.name, data.fields[p.name]);
    }
    return this.preview;
  },
  showPreview(preview) {
    this.preview = preview;
    showPreview($('#form-preview'), preview);
  },
  check(p) {
    const message = problem(p, readValue(p));
    showProblem(p.name, message);
    return message;
  },
  async submit() {
    const job = app.byId[this.id];
    if (!mayRun(job) || $('#run-button').prop('disabled')) return;  // not twice while one is starting
    const bad = job.params.filter(p => this.check(p));
    if (bad.length) {
      $('#form-error').text('Please correct the marked fields.').prop('hidden', false);
      return focusField(bad[0].name);
    }
    $('#form-error').prop('hidden', true);
    const params = Object.fromEntries(job.params.map(p => [p.name, readValue(p)]));
    const extra = {};
    const fresh = this.previewNow();  // the dialog opens at once with the last preview, then shows this one
    if (job.confirm) {
      const asked = askToRun(job.title, question(job, described(params)), this.preview);
      fresh.then(p => document.getElementById('ask').open && showPreview($('#ask-preview'), p));
      if (!await asked) return;
      extra.confirm = true;
    }
    const $button = $('#run-button').prop('disabled', true);
    const body = startBody(job, params, extra);  // multipart when the job takes files
    const res = await startRun(`/jobs/${encodeURIComponent(job.id)}/runs`, body, job.title, fresh);
    $button.prop('disabled', false);
    if (!res) return;
    const {status, data} = res;
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
    if (first) focusField(first.name);
  },
  async recent() {
    const id = this.id;
    const {status, data} = await api('GET', `/runs?job=${encodeURIComponent(id)}&limit=5`);
    if (status !== 200 || id !== this.id) return;
    $('#job-runs').empty().append(data.runs.length ? data.runs.map(r => $('<li>').append(
      $('<a>', {href: `#/runs/${r.id}`, text: `Run ${r.id}`}), ' ', badge(r.state), ' ',
      $('<span>', {class: 'muted', text: `${time(r.created)} · ${paramsText(r.params, app.byId[id])}`})))
      : $('<li>', {class: 'muted', text: 'No runs yet.'}));
  },
};
