// The JSON API: one call, one {status, data}; a server that cannot be reached is status 0.
export async function api(method, path, body) {
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
