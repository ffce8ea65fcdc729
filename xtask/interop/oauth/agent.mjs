// The scripted user's browser, for clients outside a browser: follows an authorization
// URL through the authorization server's redirects (login and consent are approved by
// the server's script), keeping its cookies, until it is sent to `redirectPrefix`.
// Returns that final URL (with `code` and `state`), or throws with where it stopped.
export async function authorize(url, redirectPrefix, jar = new Map()) {
  let at = new URL(url);
  for (let hop = 0; hop < 12; hop++) {
    if (at.href.startsWith(redirectPrefix)) return at;
    const cookie = [...jar].map(([k, v]) => `${k}=${v}`).join('; ');
    const res = await fetch(at, { redirect: 'manual', headers: cookie ? { cookie } : {} });
    for (const c of res.headers.getSetCookie()) {
      const [pair] = c.split(';');
      const eq = pair.indexOf('=');
      jar.set(pair.slice(0, eq).trim(), pair.slice(eq + 1).trim());
    }
    const location = res.headers.get('location');
    if (res.status < 300 || res.status >= 400 || !location) {
      const body = (await res.text()).slice(0, 300);
      throw new Error(`the authorization stopped at ${at.pathname} with ${res.status}: ${body}`);
    }
    await res.body?.cancel();
    at = new URL(location, at);
  }
  throw new Error('the authorization went through more than 12 redirects');
}
