// Reference server: the official socketcluster-server@20 serving the same procedures as Sockyard's
// test router, so the compatibility suite can prove each of its tests against the real thing.
//
// Usage: node reference-server.js [--port N] [--protocol-version 1|2]
//                                  [--ping-interval MS] [--ping-timeout MS]
//                                  [--auth-key KEY] [--codec json|minbin|protobuf]
//                                  [--exit-with-stdin]
// Environment fallbacks: PORT, PROTOCOL_VERSION, PING_INTERVAL, PING_TIMEOUT, AUTH_KEY, CODEC.
// --codec picks the codec engine: json (sc-formatter, the default), minbin (sc-codec-min-bin
// 3.0.0) or protobuf (sc-codec-protobuf 0.3.0 with the codec tests' types from codecs/protos.js,
// socketcluster-api's `#api` event, and an `#api` procedure serving the demo routes with
// socketcluster-api's router semantics, see codecs/api-router.js).
// --auth-key is the HS256 key tokens are signed and verified with (default `compat-test-key`,
// the key the suite signs its tokens with unless told otherwise).
// With port 0 the OS picks a free port. Once listening, the server prints one line on stdout:
// `listening on port N`. It exits on SIGTERM/SIGINT, and with --exit-with-stdin also when its
// stdin closes, so a test harness that dies without cleaning up does not leave it running.

'use strict';

const http = require('node:http');
const socketClusterServer = require('socketcluster-server');
const { option } = require('./lib/options');

function integer(name, envName, fallback) {
  const value = Number(option(name, envName, String(fallback)));
  if (!Number.isInteger(value) || value < 0) {
    console.error(`reference-server: --${name} must be a non-negative integer`);
    process.exit(2);
  }
  return value;
}

const port = integer('port', 'PORT', 0);
const protocolVersion = integer('protocol-version', 'PROTOCOL_VERSION', 2);
const pingInterval = integer('ping-interval', 'PING_INTERVAL', 8000);
const pingTimeout = integer('ping-timeout', 'PING_TIMEOUT', 30000);
const authKey = option('auth-key', 'AUTH_KEY', 'compat-test-key');
const codecName = option('codec', 'CODEC', 'json');
if (!['json', 'minbin', 'protobuf'].includes(codecName)) {
  console.error('reference-server: --codec must be json, minbin or protobuf');
  process.exit(2);
}

// The codec engine (undefined: the server's default, sc-formatter) and, for protobuf, the
// `#api` router.
let codecEngine;
let apiRouter = null;
if (codecName === 'minbin') {
  codecEngine = require('sc-codec-min-bin');
} else if (codecName === 'protobuf') {
  const { protobufApi } = require('./codecs/protos');
  const { demoRouter } = require('./codecs/api-router');
  const api = protobufApi();
  codecEngine = api.codec;
  apiRouter = demoRouter(api);
}

// Same error as Sockyard's `fail` procedure. A plain Error carries its stack as a non-enumerable
// property, so sc-errors sends only {message, name, extra}.
function customError() {
  const err = new Error('bad thing');
  err.name = 'CustomError';
  err.extra = 42;
  return err;
}

// An error with SocketCluster-style `name` (sent as {name, message} to the client).
function namedError(name, message) {
  const err = new Error(message);
  err.name = name;
  return err;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// `login` and `loginFor`: a token {username} (plus `exp` for loginFor); the server adds `iat`,
// and `exp` = iat + 86400 (authDefaultExpiry) when there is none, as Sockyard does.
async function login(socket, data, extraClaims = {}) {
  const username = data && typeof data.username === 'string' ? data.username.trim() : '';
  if (!username) {
    throw namedError('BadRequest', 'username must not be empty');
  }
  await socket.setAuthToken({ username, ...extraClaims });
  return { username };
}

// Each procedure gets the socket and the request data; it returns the reply data or throws.
const procedures = {
  echo: async (socket, data) => data,
  nothing: async () => undefined,
  fail: async () => {
    throw customError();
  },
  sleep: async (socket, data) => {
    await sleep(Number(data) || 0);
    return data;
  },
  callClient: async (socket, data) => socket.invoke('clientProc', data),
  pushToMe: async (socket, data) => {
    socket.transmit('serverEvent', data);
    return undefined;
  },
  login: async (socket, data) => login(socket, data),
  loginFor: async (socket, data) => {
    const seconds = Number(data && data.seconds) || 1;
    return login(socket, data, { exp: Math.floor(Date.now() / 1000) + seconds });
  },
  whoami: async (socket) => {
    if (!socket.authToken) {
      throw namedError('AuthError', 'Not authenticated');
    }
    return socket.authToken;
  },
  // kickOut transmits #kickOut and unsubscribes; the reply goes out once both are done.
  kickMe: async (socket, data) => {
    await socket.kickOut(data.channel, data.message);
    return undefined;
  },
  publishFromServer: async (socket, data) => {
    await socket.server.exchange.invokePublish(data.channel, data.data);
    return undefined;
  },
  'GET /resource': async () => 'no slash',
  'GET /resource/': async () => 'slash',
};

// Sockyard runs a route for a transmit too (the result is discarded); these are the ones the
// suite transmits, served here as receivers.
const receivers = {
  echo: async () => undefined,
  pushToMe: async (socket, data) => {
    socket.transmit('serverEvent', data);
  },
};

async function serveProcedure(socket, name, handler) {
  for await (const request of socket.procedure(name)) {
    // Not awaited: one slow call (sleep, callClient) must not hold up the next request's
    // stream, but the server itself already hands requests over in arrival order.
    handler(socket, request.data).then(
      (result) => request.end(result),
      (err) => request.error(err),
    );
  }
}

async function serveReceiver(socket, name, handler) {
  for await (const data of socket.receiver(name)) {
    await handler(socket, data);
  }
}

// `closeMe` answers first and then closes, so the caller sees the reply and then the close.
async function serveCloseMe(socket) {
  for await (const request of socket.procedure('closeMe')) {
    const data = request.data || {};
    request.end();
    socket.disconnect(data.code || 1000, data.reason || '');
  }
}

async function serveSocket(socket) {
  const tasks = [serveCloseMe(socket)];
  if (apiRouter) {
    tasks.push(apiRouter.serve(socket));
  }
  for (const [name, handler] of Object.entries(procedures)) {
    tasks.push(serveProcedure(socket, name, handler));
  }
  for (const [name, handler] of Object.entries(receivers)) {
    tasks.push(serveReceiver(socket, name, handler));
  }
  await Promise.all(tasks);
}

const httpServer = http.createServer((req, res) => {
  res.writeHead(404);
  res.end();
});

const agServer = socketClusterServer.attach(httpServer, {
  protocolVersion,
  pingInterval,
  pingTimeout,
  authKey,
  ...(codecEngine ? { codecEngine } : {}),
});

// The rule of Sockyard's default configuration: channels named `private/…` need an
// authenticated socket to subscribe and to publish (error named AuthError). Everything else is
// allowed, including the AUTHENTICATE action, which this middleware stream also sees.
agServer.setMiddleware(agServer.MIDDLEWARE_INBOUND, async (stream) => {
  for await (const action of stream) {
    const isChannelAction = action.type === action.SUBSCRIBE || action.type === action.PUBLISH_IN;
    if (isChannelAction && action.channel.startsWith('private/') && !action.socket.authToken) {
      const what = action.type === action.SUBSCRIBE ? 'subscribe to' : 'publish to';
      action.block(namedError('AuthError', `Authentication is required to ${what} ${action.channel}`));
      continue;
    }
    action.allow();
  }
});

(async () => {
  for await (const { socket } of agServer.listener('connection')) {
    serveSocket(socket).catch((err) => console.error('reference-server: socket task', err));
  }
})();

// Warnings (e.g. a client that never pongs) and errors are expected in negative tests; log them
// on stderr only, so stdout stays machine-readable.
(async () => {
  for await (const { warning } of agServer.listener('warning')) {
    console.error(`reference-server warning: ${warning && warning.message}`);
  }
})();
(async () => {
  for await (const { error } of agServer.listener('error')) {
    console.error(`reference-server error: ${error && error.message}`);
  }
})();

httpServer.listen(port, '127.0.0.1', () => {
  process.stdout.write(`listening on port ${httpServer.address().port}\n`);
});

function shutdown() {
  agServer.close();
  httpServer.close();
  process.exit(0);
}

process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
if (process.argv.includes('--exit-with-stdin')) {
  // The parent holds our stdin; when it goes away (even without signalling us) we exit too.
  process.stdin.on('end', shutdown);
  process.stdin.on('error', shutdown);
  process.stdin.resume();
}
