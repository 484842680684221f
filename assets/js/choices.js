// Lists from a command (param.NAME.choices_from): asked for once the form is drawn, per field,
// never holding up the form. A field waits, disabled, until its inputs are filled in; shows a
// spinner while its list comes; asks again 300 ms after an input stops changing; says why and
// offers Retry when the command fails. The server checks the value again at start.
import { $, mayRun } from './util.js';
import { api } from './api.js';

const DELAY = 300;  // ms after the last change of an input before its dependent list is asked for
let form = null;  // {job, read, changed, fields: Map(name -> {seq, timer, want})} of the open form

const fieldOf = name => $('#fields .field').filter((_, el) => el.dataset.name === name);
const param = name => form.job.params.find(p => p.name === name);
const isEmpty = (p, v) => p.type !== 'bool' && (v === '' || v === null || v === undefined || (Array.isArray(v) && !v.length));
const controls = p => fieldOf(p.name).find(p.type === 'multichoice' ? 'input' : 'select');

// After the form is drawn: `wanted` is each field's starting value (prefill or default), `read`
// reads a field's value, `changed` is told when a list changed a value (for the preview).
export function loadChoices(job, wanted, read, changed) {
  if (form) for (const f of form.fields.values()) clearTimeout(f.timer);
  form = {job, read, changed, fields: new Map()};
  const lists = job.params.filter(p => p.choices_from);
  for (const p of lists) {
    fieldOf(p.name).find('.error').before($('<p>', {class: 'choices-status', id: `c-${p.name}`, role: 'status'}));
    form.fields.set(p.name, {seq: 0, timer: 0, want: wanted[p.name]});
  }
  $('#fields').off('.choices');
  if (!lists.length) return;
  $('#fields').on('input.choices change.choices', 'input, select, textarea', e => dependents(e.target.name, DELAY));
  for (const p of lists) refresh(p, 0);
}

function dependents(name, delay) {
  for (const p of form.job.params) if (p.choices_from?.inputs.includes(name)) refresh(p, delay);
}

function refresh(p, delay) {
  const f = form.fields.get(p.name);
  clearTimeout(f.timer);
  const seq = ++f.seq;
  const missing = p.choices_from.inputs.map(param).filter(i => isEmpty(i, form.read(i)));
  if (missing.length) {
    const before = JSON.stringify(form.read(p));
    status(p, 'waiting', `Choose ${missing.map(i => i.label).join(' and ')} first.`);
    if (JSON.stringify(form.read(p)) !== before) dependents(p.name, 0);
    return;
  }
  status(p, 'loading', 'Loading choices…');  // at once: no pick from a list that is about to change
  const current = form;
  f.timer = setTimeout(() => ask(p, f, seq, current), delay);
}

async function ask(p, f, seq, current) {
  const query = new URLSearchParams();
  for (const i of p.choices_from.inputs.map(param)) {
    const v = form.read(i);
    for (const item of Array.isArray(v) ? v : [v]) query.append(i.name, String(item));
  }
  const job = encodeURIComponent(form.job.id);
  const {status: code, data} = await api('GET', `/jobs/${job}/params/${encodeURIComponent(p.name)}/choices?${query}`);
  if (current !== form || seq !== f.seq) return;  // another form, or a newer request
  if (code === 200) return fill(p, f, data.choices);
  const fields = data.fields ? Object.values(data.fields).join(' ') : '';
  status(p, 'failed', `Could not load the choices: ${data.error || 'no answer'}${fields ? ` (${fields})` : ''}.`,
    data.detail || []);
}

function fill(p, f, choices) {
  const before = form.read(p);
  const keep = new Set((f.want !== undefined && f.want !== null ? [f.want] : [before]).flat().filter(v => choices.includes(v)));
  f.want = undefined;  // the starting value counts for the first list only
  const $f = fieldOf(p.name);
  if (p.type === 'multichoice') {
    $f.find('.checks').empty().append(choices.map(c => $('<label>').append(
      $('<input>', {type: 'checkbox', name: p.name, value: c}).prop('checked', keep.has(c)), ' ', $('<span>', {text: c}))));
  } else {
    const $s = $f.find('select').empty().append($('<option>', {value: '', text: '— choose —'}));
    for (const c of choices) $s.append($('<option>', {value: c, text: c}));
    $s.val([...keep][0] ?? '');
  }
  status(p, 'ready', choices.length ? '' : 'No choices right now.');
  if (JSON.stringify(form.read(p)) !== JSON.stringify(before)) {
    dependents(p.name, 0);
    form.changed();
  }
}

function status(p, state, text, detail = []) {
  const $st = $(`#c-${p.name}`).empty().attr('data-state', state).toggleClass('failed', state === 'failed');
  if (state === 'loading') $st.append($('<span>', {class: 'spinner', 'aria-hidden': 'true'}));
  $st.append(document.createTextNode(text));
  if (detail.length) $st.append($('<pre>', {class: 'choices-detail', text: detail.join('\n')}));
  if (state === 'failed') {
    $st.append(' ', $('<button>', {type: 'button', class: 'small', text: 'Retry'}).on('click', () => refresh(p, 0)));
  }
  const $c = controls(p);
  $c.prop('disabled', state !== 'ready' || !mayRun(form.job));
  fieldOf(p.name).attr('aria-busy', state === 'loading' ? 'true' : null);
  if (state === 'waiting') {  // no list without its inputs: nothing to keep or to send
    if (p.type === 'multichoice') fieldOf(p.name).find('.checks').empty();
    else $c.empty().append($('<option>', {value: '', text: '— choose —'})).val('');
  }
}
