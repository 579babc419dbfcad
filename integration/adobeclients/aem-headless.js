// Runs Adobe's @adobe/aem-headless-client-nodejs (pinned in
// integration/package.json) against AEM's GraphQL API.
//
// Input (stdin, JSON): {"serviceURL": AEM base URL, "credentialsFile":
// optional service-credentials file for getToken, "imsPort": the port
// getToken's IMS listens on, "steps": [{"op": "getToken" | "runQuery" |
// "runPersistedQuery" | "listPersistedQueries" | "persistQuery", "args":
// [...]}]}. No step passes credentials to the queries: they go through the
// proxy's aem route, which adds them.
// Output (stdout, one JSON line): {"ok":true,"results":[...]} or
// {"ok":false,"step","message"}. Exit status 0 either way.
//
// getToken speaks HTTPS to port 443 of the credentials file's imsEndpoint
// (https.request with the host alone). A test cannot listen on port 443, so
// https.globalAgent, which that request uses, connects port 443 of that
// host to the emulator's port instead: the stand-in for DNS and a port. The
// TLS handshake, the certificate check (NODE_EXTRA_CA_CERTS trusts the
// emulator's CA) and the request are the client's own.
'use strict';

const https = require('https');
const AEMHeadless = require('@adobe/aem-headless-client-nodejs');

let input = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk) => { input += chunk; });
process.stdin.on('end', async () => {
  const { serviceURL, credentialsFile, imsPort, steps } = JSON.parse(input);
  if (imsPort) {
    class EmulatorAgent extends https.Agent {
      createConnection(options, callback) {
        const port = Number(options.port) === 443 ? imsPort : options.port;
        return super.createConnection({ ...options, port }, callback);
      }
    }
    https.globalAgent = new EmulatorAgent({ keepAlive: false });
  }
  const client = new AEMHeadless({ serviceURL });
  const results = [];
  for (const [i, step] of steps.entries()) {
    try {
      let res;
      if (step.op === 'getToken') {
        res = await AEMHeadless.getToken(credentialsFile);
      } else {
        res = await client[step.op](...(step.args || []));
      }
      results.push(res);
    } catch (err) {
      process.stdout.write(JSON.stringify({ ok: false, step: i, message: String(err && err.message || err) }) + '\n');
      return;
    }
  }
  process.stdout.write(JSON.stringify({ ok: true, results }) + '\n');
});
