// Exchanges a JWT for an access token with Adobe's own client,
// @adobe/jwt-auth, so the Go tests can prove that integration/fakeadobe
// answers it the way Adobe IMS does.
//
// Input (stdin, JSON): the options of @adobe/jwt-auth (clientId,
// clientSecret, technicalAccountId, orgId, privateKey, metaScopes, ims).
// Output (stdout, one JSON line): {"ok":true,"token_type","expires_in",
// "access_token"} or {"ok":false,"code","message"}. Exit status 0 either way;
// anything else is a failure of the script itself.
'use strict';

const authorize = require('@adobe/jwt-auth');

let input = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', chunk => { input += chunk; });
process.stdin.on('end', async () => {
  const options = JSON.parse(input);
  try {
    const res = await authorize(options);
    process.stdout.write(JSON.stringify({
      ok: true,
      token_type: res.token_type,
      expires_in: res.expires_in,
      access_token: res.access_token
    }) + '\n');
  } catch (err) {
    process.stdout.write(JSON.stringify({ ok: false, code: err.code, message: err.message }) + '\n');
  }
});
