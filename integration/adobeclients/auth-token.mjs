// Gets an access token with Adobe's @adobe/auth-token (pinned in
// integration/package.json), OAuth server-to-server client credentials
// posted URL-encoded to /ims/token/v3. The library hard-codes
// https://ims-na1.adobelogin.com, so only that origin is changed: fetch
// sends its requests to the emulator instead, everything else as sent.
//
// Input (stdin, JSON): {"ims": base URL, "clientId", "clientSecret",
// "scope"}. Output (stdout, one JSON line): {"ok":true,"token",
// "expires_in","token_type"} or {"ok":false,"message"}. Exit status 0 either
// way.
import { auth } from '@adobe/auth-token';

const adobeIMS = 'https://ims-na1.adobelogin.com';

let input = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk) => { input += chunk; });
process.stdin.on('end', async () => {
  const { ims, clientId, clientSecret, scope } = JSON.parse(input);
  const fetchAdobe = globalThis.fetch;
  globalThis.fetch = (url, init) => {
    const u = String(url);
    if (!u.startsWith(adobeIMS + '/')) {
      throw new Error('@adobe/auth-token fetched ' + u + ', not Adobe IMS');
    }
    return fetchAdobe(ims + u.slice(adobeIMS.length), init);
  };
  try {
    const res = await auth({ clientId, clientSecret, scope, environment: 'production' });
    process.stdout.write(JSON.stringify({
      ok: true, token: res.access_token, expires_in: res.expires_in, token_type: res.token_type,
    }) + '\n');
  } catch (err) {
    process.stdout.write(JSON.stringify({ ok: false, message: err.message }) + '\n');
  }
});
