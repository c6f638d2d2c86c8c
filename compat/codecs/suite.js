// The codec compatibility suite: socketcluster-client 20 with the official binary codecs,
// sc-codec-min-bin 3.0.0 (minbin.js) and sc-codec-protobuf 0.3.0 with socketcluster-api's `#api`
// (protobuf.js, through lib/scapi.js), plus bad binary input through raw sockets (bad-input.js),
// against Sockyard or against socketcluster-server 20 started with the same codec
// (reference-server.js --codec minbin|protobuf).
//
// Usage: node codecs/suite.js --minbin-url ws://HOST:PORT/PATH --protobuf-url ws://HOST:PORT/PATH
//                             [--server sockyard|reference] [--auth-key KEY] [--jobs N]
//                             [--filter TEXT]
// Environment fallbacks: CODEC_MINBIN_URL, CODEC_PROTOBUF_URL, CODEC_SERVER, CODEC_AUTH_KEY,
// CODEC_JOBS, CODEC_FILTER. Either URL may be left out to skip that codec's tests. --auth-key is
// the servers' HS256 key, which the tests sign their tokens with (default compat-test-key).
//
// The server must serve Sockyard's test-router procedures (echo, nothing, fail, callClient,
// pushToMe, login, whoami, kickMe), sign and verify tokens with --auth-key, and ping with a
// pingTimeout of at most 2 s. Its protobuf endpoint must register socketcluster-api's `#api` and
// then the events of codecs/protos.js, and answer `#api` GET /resource and GET /fail like
// Sockyard's demo. Exit status: 0 when no test failed.

'use strict';

const { Writable } = require('node:stream');
const { Suite } = require('../lib/harness');
const { option } = require('../lib/options');

const minbinUrl = option('minbin-url', 'CODEC_MINBIN_URL', null);
const protobufUrl = option('protobuf-url', 'CODEC_PROTOBUF_URL', null);
const server = option('server', 'CODEC_SERVER', 'sockyard');
const jobs = Number(option('jobs', 'CODEC_JOBS', '4'));
const filter = option('filter', 'CODEC_FILTER', null);
const authKey = option('auth-key', 'CODEC_AUTH_KEY', 'compat-test-key');

if ((!minbinUrl && !protobufUrl) || !['sockyard', 'reference'].includes(server)) {
  console.error('usage: node codecs/suite.js --minbin-url URL --protobuf-url URL [--server sockyard|reference]');
  process.exit(2);
}

const isSockyard = server === 'sockyard';

// Two suites run side by side. sc-codec-protobuf on a server keeps one cid → response-type map
// for all its connections, so two clients with calls in flight under the same cid can get each
// other's reply type: against the official server the protobuf tests run one at a time.
const minbinSuite = new Suite({ jobs, filter });
const protobufSuite = new Suite({ jobs: isSockyard ? jobs : 1, filter });

if (minbinUrl) {
  require('./minbin').register(minbinSuite, { url: minbinUrl, isSockyard, authKey });
}
if (protobufUrl) {
  require('./protobuf').register(protobufSuite, { url: protobufUrl, isSockyard, authKey });
}
require('./bad-input').register(
  minbinUrl ? minbinSuite : new Suite(),
  protobufUrl ? protobufSuite : new Suite(),
  { minbinUrl, protobufUrl, isSockyard },
);

// A promise rejected with nobody listening would otherwise end the process mid-run (Node's
// default); record it and fail the run at the end instead.
const unhandled = [];
process.on('unhandledRejection', (reason) => {
  unhandled.push(reason);
  console.log(`unhandled rejection: ${reason && reason.stack ? reason.stack : reason}`);
});

// Collects one suite's report, printed once both have finished.
function buffer() {
  const chunks = [];
  const stream = new Writable({
    write(chunk, encoding, callback) {
      chunks.push(chunk.toString());
      callback();
    },
  });
  stream.text = () => chunks.join('');
  return stream;
}

(async () => {
  console.log(`codec suite: server=${server} minbin=${minbinUrl || '(none)'} protobuf=${protobufUrl || '(none)'}`);
  const outputs = [buffer(), buffer()];
  const [minbinFailures, protobufFailures] = await Promise.all([
    minbinSuite.run(outputs[0]),
    protobufSuite.run(outputs[1]),
  ]);
  console.log(`==== sc-codec-min-bin ====\n${outputs[0].text()}`);
  console.log(`==== sc-codec-protobuf ====\n${outputs[1].text()}`);
  const failures = minbinFailures + protobufFailures + unhandled.length;
  // Client sockets and streams may still hold the event loop; the verdict is in.
  process.exit(failures === 0 ? 0 : 1);
})().catch((err) => {
  console.error(err);
  process.exit(1);
});
