// Self-check of the compatibility suite without Rust: starts official reference servers with
// short ping settings and the same auth key (protocol v2 for v20 clients, protocol v1 for v14
// clients, and two protocol v2 servers with the sc-codec-min-bin and sc-codec-protobuf codecs),
// then runs suite.js and codecs/suite.js against them. `npm test` runs this; it exits 0 when
// both suites pass. Extra arguments (e.g. --filter TEXT) go to both suites.

'use strict';

const { spawn } = require('node:child_process');
const path = require('node:path');
const readline = require('node:readline');

const PING_ARGS = ['--ping-interval', '300', '--ping-timeout', '1500'];
// The HS256 key of both servers; the suite signs its test tokens with it.
const AUTH_KEY = 'compat-test-key';

// Starts reference-server.js and resolves with {child, port} once it prints its port.
function startReference(protocolVersion, codec = 'json') {
  const child = spawn(
    process.execPath,
    [path.join(__dirname, 'reference-server.js'), '--port', '0', '--protocol-version', String(protocolVersion), '--codec', codec, ...PING_ARGS, '--auth-key', AUTH_KEY, '--exit-with-stdin'],
    { stdio: ['pipe', 'pipe', 'inherit'] },
  );
  return new Promise((resolve, reject) => {
    const lines = readline.createInterface({ input: child.stdout });
    lines.on('line', (line) => {
      const match = /^listening on port (\d+)$/.exec(line);
      if (match) {
        resolve({ child, port: Number(match[1]) });
      }
    });
    child.once('exit', (code) => reject(new Error(`reference server exited early with ${code}`)));
  });
}

// Runs `node <script> <args>` with inherited output; resolves with its exit code.
function run(script, args) {
  const child = spawn(process.execPath, [path.join(__dirname, script), ...args, ...process.argv.slice(2)], { stdio: 'inherit' });
  return new Promise((resolve) => child.on('exit', (code) => resolve(code == null ? 1 : code)));
}

(async () => {
  const [v2, v1, minbin, protobuf] = await Promise.all([
    startReference(2),
    startReference(1),
    startReference(2, 'minbin'),
    startReference(2, 'protobuf'),
  ]);
  const url = (server) => `ws://127.0.0.1:${server.port}/socketcluster/`;
  const main = await run('suite.js', ['--server', 'reference', '--url', url(v2), '--v1-url', url(v1), '--auth-key', AUTH_KEY]);
  const codecs = await run('codecs/suite.js', ['--server', 'reference', '--minbin-url', url(minbin), '--protobuf-url', url(protobuf), '--auth-key', AUTH_KEY]);
  for (const server of [v2, v1, minbin, protobuf]) {
    server.child.kill();
  }
  process.exit(main === 0 && codecs === 0 ? 0 : 1);
})().catch((err) => {
  console.error(err);
  process.exit(1);
});
