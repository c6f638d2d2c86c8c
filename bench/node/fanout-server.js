// Reference pub/sub server for `sockyard-bench fanout`: the official socketcluster-server 20 with
// its default settings (client publish allowed, simple in-process broker), apart from pings made
// rare so they stay out of the measurement.
//
// Usage: node fanout-server.js [PORT]
// PORT 0 (the default) lets the OS pick a free port. Once listening, the server prints one line on
// stdout: `listening on port N`. Everything binds to 127.0.0.1. It exits on SIGTERM/SIGINT and
// when its stdin closes, so it does not outlive the benchmark that started it.

'use strict';

const http = require('node:http');
const socketClusterServer = require('socketcluster-server');

const port = Number(process.argv[2] ?? 0);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error(`fanout-server: bad port ${JSON.stringify(process.argv[2])}`);
  process.exit(2);
}

const httpServer = http.createServer();
const agServer = socketClusterServer.attach(httpServer, {
  // A ping every 10 minutes; a client silent for 20 minutes is dropped. Subscribers never send
  // anything after subscribing, so the default 30 s pingTimeout would cut them off mid-run.
  pingInterval: 600000,
  pingTimeout: 1200000,
});

// Surface server errors and warnings on stderr, where the benchmark collects them.
(async () => {
  for await (const { error } of agServer.listener('error')) {
    console.error(`error: ${error && error.message}`);
  }
})();
(async () => {
  for await (const { warning } of agServer.listener('warning')) {
    console.error(`warning: ${warning && warning.message}`);
  }
})();

httpServer.listen(port, '127.0.0.1', () => {
  console.log(`listening on port ${httpServer.address().port}`);
});

function stop() {
  process.exit(0);
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
process.stdin.on('end', stop);
process.stdin.on('close', stop);
process.stdin.resume();
