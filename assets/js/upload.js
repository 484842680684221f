// File parameters in the form: a chooser limited by the job's `accept`, a quick check of size and
// name before sending (the server checks again), and the start request as multipart/form-data:
// a part named `json` with the usual body and one part per chosen file, named after its parameter.
import { $, sizeText } from './util.js';

export const isFile = p => p.type === 'file';

export const fileControl = (p, common) =>
  $('<input>', {...common, type: 'file', accept: (p.accept || []).join(',') || null});

export const fileValue = el => el.files?.[0] || '';

// Under the field: what the server will take.
export const fileHint = p => p.type !== 'file' ? ''
  : `Up to ${sizeText(p.max_size)}${p.accept?.length ? `; ${p.accept.join(', ')}` : ''}.`;

// As the server judges a name: an extension listed in `accept` (media types are the server's to map).
function acceptedName(accept, name) {
  const endings = (accept || []).filter(a => a.startsWith('.'));
  if (!accept?.length || endings.length < accept.length) return true;
  const lower = name.toLowerCase();
  return endings.some(e => lower.endsWith(e) && lower.length > e.length);
}

export function fileProblem(p, file) {
  if (!(file instanceof File)) return '';
  if (file.size > p.max_size) return `Larger than the ${sizeText(p.max_size)} allowed.`;
  if (!acceptedName(p.accept, file.name)) return `Must be one of: ${p.accept.join(', ')}.`;
  return '';
}

// A file as JSON may carry it: described (the preview, the confirm question), or left out (a start).
export const described = params => Object.fromEntries(Object.entries(params).map(([k, v]) =>
  [k, v instanceof File ? {name: v.name, size: v.size} : v]));
const withoutFiles = params => Object.fromEntries(Object.entries(params).filter(([, v]) => !(v instanceof File)));

// The body of a start: JSON for a job without files; else multipart (the browser sets the boundary).
export function startBody(job, params, extra = {}) {
  const body = {params: withoutFiles(params), ...extra};
  if (!job.params.some(isFile)) return body;
  const form = new FormData();
  form.append('json', JSON.stringify(body));
  for (const [name, value] of Object.entries(params)) if (value instanceof File) form.append(name, value, value.name);
  return form;
}
