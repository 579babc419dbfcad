// Uploads files into AEM with Adobe's @adobe/aem-upload (pinned in
// integration/package.json): FileSystemUpload creates the target folder
// through the Assets HTTP API, then uploads each file by direct binary
// upload (initiateUpload.json, PUT of the parts to blob storage,
// completeUpload.json). Only the base URL changes: the AEM URL is the
// proxy's aem route, and no credentials are given (the proxy adds them).
//
// Input (stdin, JSON): {"url": AEM base URL, "folder": "/content/dam/...",
// "files": [local paths]}.
// Output (stdout, one JSON line): {"ok":true,"result"} with aem-upload's
// result, or {"ok":false,"message"}. Exit status 0 either way.
'use strict';

const {
  FileSystemUpload,
  FileSystemUploadOptions,
} = require('@adobe/aem-upload');

let input = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk) => { input += chunk; });
process.stdin.on('end', async () => {
  const { url, folder, files } = JSON.parse(input);
  const options = new FileSystemUploadOptions()
    .withUrl(url + folder)
    .withHttpRetryCount(1)
    .withHttpRetryDelay(100);
  const quiet = { debug() {}, info() {}, warn() {}, error() {} };
  try {
    const upload = new FileSystemUpload({ log: quiet });
    const result = await upload.upload(options, files);
    process.stdout.write(JSON.stringify({ ok: true, result }) + '\n');
  } catch (err) {
    process.stdout.write(JSON.stringify({ ok: false, message: String(err && err.message || err) }) + '\n');
  }
});
