// The banner for a jobs.ini that was not reloaded (server/reload.py): the server keeps serving its
// last good version and says why in /api/jobs' `config_error` (FILE:LINE: message lines for admins),
// shown here until a good file replaces it. The page hears of every reload through /api/events.
import { $ } from './util.js';

export function showConfigError(error) {
  let $banner = $('#config-error');
  if (!$banner.length) {
    $banner = $('<div>', {id: 'config-error', class: 'page-error', role: 'alert'}).prependTo('#main');
  }
  $banner.empty().prop('hidden', !error);
  if (error) {
    $banner.append($('<strong>', {text: 'jobs.ini was not reloaded: the jobs shown are its last good version.'}),
      error.split('\n').map(line => $('<div>', {class: 'config-problem', text: line})));
  }
}
