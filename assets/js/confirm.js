// The modal question, and starting a run the way the server wants it confirmed: a job with
// `confirm` starts only when the request says `"confirm": true`; otherwise the server answers 428
// with the question filled in, which is asked here (as text) before sending again.
import { $, showPreview } from './util.js';
import { api } from './api.js';

// A modal question with two named buttons (and what would run, if a preview is given); resolves true for the first.
export function ask(title, text, yes, no, safeDefault = false, preview = null) {
  const dialog = document.getElementById('ask');
  $('#ask-title').text(title);
  $('#ask-text').text(text);
  showPreview($('#ask-preview'), preview);
  $('#ask-yes').text(yes);
  $('#ask-no').text(no);
  dialog.returnValue = '';
  dialog.showModal();
  (safeDefault ? $('#ask-no') : $('#ask-yes')).trigger('focus');
  return new Promise(resolve => $(dialog).one('close', () => resolve(dialog.returnValue === 'yes')));
}

export const askToRun = (title, question, preview = null) =>
  ask(`Run “${title}”?`, question, 'Yes, run it', 'Go back', false, preview);

// POST `body` to `path` (a job's runs, or a rerun); on 428 ask the server's question (with
// `preview`, a preview or a promise of one) and, if the answer is yes, send again confirmed.
// null when the analyst said no: nothing started.
export async function startRun(path, body, title, preview = null) {
  const res = await api('POST', path, body);
  if (res.status !== 428 || typeof res.data.confirm !== 'string') return res;
  if (!await askToRun(title, res.data.confirm, await preview)) return null;
  return api('POST', path, {...body, confirm: true});
}
