// Gets an access token with Adobe's @adobe/aio-lib-ims (pinned in
// integration/package.json), the way its getToken(context) does: the login
// plugin that supports the configuration (aio-lib-ims-jwt for a JWT
// context, aio-lib-ims-oauth's server-to-server plugin for an OAuth one) is
// called with an Ims instance. Only the base URL changes: the instance's
// endpoint is the emulator instead of https://ims-na1.adobelogin.com.
//
// Input (stdin, JSON): {"ims": base URL, "config": an aio-lib-ims context
// (client_id, client_secret(s), ims_org_id, technical_account_id,
// meta_scopes and private_key, or scopes...)}.
// Output (stdout, one JSON line): {"ok":true,"plugin","token","expiry",
// "payload"} or {"ok":false,"message"}. Exit status 0 either way.
'use strict';

const path = require('path');

// The modules exactly as aio-lib-ims's token helper requires them.
const imsDir = path.dirname(require.resolve('@adobe/aio-lib-ims'));
const fromIms = (name) => require(require.resolve(name, { paths: [imsDir] }));
const { Ims } = require('@adobe/aio-lib-ims');
const plugins = {
  jwt: fromIms('@adobe/aio-lib-ims-jwt'),
  oauth_server_to_server: fromIms('@adobe/aio-lib-ims-oauth/src/ims-oauth_server_to_server'),
};

let input = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk) => { input += chunk; });
process.stdin.on('end', async () => {
  const { ims: base, config } = JSON.parse(input);
  const ims = new Ims('prod');
  ims.endpoint = base;
  try {
    const name = Object.keys(plugins).find((n) => plugins[n].supports(config));
    if (!name) {
      throw new Error('no aio-lib-ims plugin supports this configuration');
    }
    const result = await plugins[name].imsLogin(ims, config);
    process.stdout.write(JSON.stringify({
      ok: true,
      plugin: name,
      token: result.access_token.token,
      expiry: result.access_token.expiry,
      payload: result.payload,
    }) + '\n');
  } catch (err) {
    process.stdout.write(JSON.stringify({ ok: false, message: err.message }) + '\n');
  }
});
