// The JSON API: one call, one {status, data, headers}; a server that cannot be reached is status 0.
// A 401 once the page is signed in means the session ended: then `api.expired` (main.js) runs.
export async function api(method, path, body) {
  const init = {method, headers: {}};
  if (body instanceof FormData) {
    init.body = body;  // multipart: a start with files (upload.js)
  } else if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch('api' + path, init);  // relative: works under any base path
  } catch {
    return {status: 0, data: {error: 'Pushbutton cannot be reached. Check that it is still running.'}};
  }
  const data = await res.json().catch(() => ({}));
  if (res.status === 401 && api.expired && path !== '/session') api.expired();
  return {status: res.status, data, headers: res.headers};
}
