// Auth scenarios of the compatibility suite: tokens offered in the handshake (valid, expired,
// signed with another key, malformed), #authenticate with good and bad tokens, client-side
// deauthentication, #setAuthToken after `login`, and expiry while connected. Registered by
// suite.js, which passes its helpers in `env`; every scenario runs with the v20 and the v14
// client. Test tokens are signed here with jsonwebtoken and the server's key (--auth-key).
//
// The official server does not order replies with respect to its pushes (#setAuthToken,
// #removeAuthToken): these tests wait for each on its own and never assume one comes first.

'use strict';

const assert = require('node:assert/strict');
const jwt = require('jsonwebtoken');
const { MemoryAuthEngine, waitFor, sleep } = require('../lib/clients');

// A key the server under test does not know.
const OTHER_KEY = 'some-other-key';

const nowSeconds = () => Math.floor(Date.now() / 1000);

function register(suite, env) {
  const { KINDS, ENDPOINT, NO_V1, authKey, client, connectedClient, raw, rejection } = env;

  // A token the server accepts (HS256 is jsonwebtoken's default), valid for an hour.
  const validToken = (username) => jwt.sign({ username }, authKey, { expiresIn: 3600 });

  // A client whose auth engine holds `token`, so the client offers it in its handshake.
  const clientWithToken = (t, kind, token, options = {}) =>
    client(t, kind, { authEngine: new MemoryAuthEngine(token), ...options });

  // The handshake reply packet among the client's inbound frames.
  function handshakeReply(c) {
    const handshake = c.outboundPackets().find((p) => p.event === '#handshake');
    assert.ok(handshake, 'the client sent #handshake');
    const reply = c.inboundPackets().find((p) => p.rid === handshake.cid);
    assert.ok(reply, `the handshake reply among ${JSON.stringify(c.inbound)}`);
    return { handshake, reply };
  }

  // Asserts that `whoami` fails with AuthError: the server sees no token.
  async function assertUnauthenticatedOnServer(c, what) {
    const err = await rejection(c.invoke('whoami'), `whoami ${what}`);
    assert.equal(err.name, 'AuthError', `whoami ${what}: ${err.name}: ${err.message}`);
  }

  // Waits for the server's #removeAuthToken push and checks its exact frame (no cid, no data).
  async function removeAuthTokenPush(c) {
    await waitFor(() => c.inboundEvents('#removeAuthToken').length >= 1, 3000, '#removeAuthToken from the server');
    assert.deepStrictEqual(c.inboundEvents('#removeAuthToken'), [{ event: '#removeAuthToken' }]);
  }

  const BAD_HANDSHAKE_TOKENS = [
    {
      label: 'an expired token',
      exp: nowSeconds() - 60,
      make(exp) {
        return jwt.sign({ username: 'ann', exp }, authKey);
      },
      name: 'AuthTokenExpiredError',
      message: 'jwt expired',
    },
    {
      label: 'a token signed with another key',
      make() {
        return jwt.sign({ username: 'ann' }, OTHER_KEY, { expiresIn: 3600 });
      },
      name: 'AuthTokenInvalidError',
      message: 'invalid signature',
    },
    {
      label: 'a malformed token',
      make() {
        return 'this-is-not-a-jwt';
      },
      name: 'AuthTokenInvalidError',
      message: 'jwt malformed',
    },
  ];

  for (const kind of KINDS) {
    const skip = ENDPOINT[kind] ? undefined : NO_V1;

    suite.test(`${kind} handshake with a valid token: authenticated, no #setAuthToken`, async (t) => {
      const token = validToken('ann');
      const c = clientWithToken(t, kind, token);
      const status = await c.connected();
      assert.equal(status.isAuthenticated, true);
      const { handshake, reply } = handshakeReply(c);
      assert.equal(handshake.data.authToken, token, 'the client offered its stored token');
      assert.deepStrictEqual(Object.keys(reply.data).sort(), ['id', 'isAuthenticated', 'pingTimeout'], JSON.stringify(reply));
      assert.equal(reply.data.isAuthenticated, true);
      assert.equal(c.authState, 'authenticated');
      assert.deepStrictEqual(c.authToken, jwt.decode(token));
      assert.deepStrictEqual(await c.invoke('whoami'), jwt.decode(token), 'the server holds the claims');
      await sleep(150);
      assert.deepStrictEqual(c.inboundEvents('#setAuthToken'), [], 'the token is not sent back');
      assert.deepStrictEqual(c.inboundEvents('#removeAuthToken'), []);
      assert.equal(c.storedToken, token);
    }, { skip });

    for (const bad of BAD_HANDSHAKE_TOKENS) {
      suite.test(`${kind} handshake with ${bad.label}: ${bad.name}, #removeAuthToken, stays open`, async (t) => {
        const token = bad.make(bad.exp);
        const c = clientWithToken(t, kind, token);
        const status = await c.connected();
        assert.equal(status.isAuthenticated, false);
        assert.ok(status.authError, 'the client got the authError');
        assert.equal(status.authError.name, bad.name);
        // The soft error in the reply: {name, message, isBadToken} (+ expiry for an expired token).
        const { reply } = handshakeReply(c);
        assert.deepStrictEqual(Object.keys(reply.data).sort(), ['authError', 'id', 'isAuthenticated', 'pingTimeout'], JSON.stringify(reply));
        assert.equal(reply.data.isAuthenticated, false);
        const expected = { name: bad.name, message: bad.message, isBadToken: true };
        if (bad.exp) {
          expected.expiry = new Date(bad.exp * 1000).toISOString();
        }
        assert.deepStrictEqual(reply.data.authError, expected);
        // Then the server tells the client to drop the token.
        await removeAuthTokenPush(c);
        await waitFor(() => c.storedToken === null, 2000, 'the client to drop its token');
        await c.logged('removeAuthToken');
        assert.equal(c.authState, 'unauthenticated');
        await assertUnauthenticatedOnServer(c, 'after a bad handshake token');
        await sleep(100);
        assert.deepEqual(c.closes, [], 'the connection stays open');
        assert.equal(await c.invoke('echo', 'open'), 'open');
      }, { skip });
    }

    suite.test(`${kind} #authenticate with a valid token`, async (t) => {
      const c = await connectedClient(t, kind);
      const token = validToken('dee');
      const status = await c.authenticate(token);
      assert.equal(status.isAuthenticated, true);
      assert.equal(status.authError, null);
      const request = c.outboundPackets().find((p) => p.event === '#authenticate');
      assert.deepStrictEqual(request, { event: '#authenticate', data: token, cid: request.cid });
      const reply = c.inboundPackets().find((p) => p.rid === request.cid);
      assert.deepStrictEqual(reply, { rid: request.cid, data: { isAuthenticated: true, authError: null } });
      assert.equal(c.authState, 'authenticated');
      assert.deepStrictEqual(c.authToken, jwt.decode(token));
      await c.logged('authenticate');
      assert.deepStrictEqual(await c.invoke('whoami'), jwt.decode(token));
      await waitFor(() => c.storedToken === token, 2000, 'the client to store the token');
      await sleep(100);
      assert.deepStrictEqual(c.inboundEvents('#removeAuthToken'), []);
      assert.deepStrictEqual(c.inboundEvents('#setAuthToken'), []);
    }, { skip });

    suite.test(`${kind} #authenticate with a bad token: AuthTokenInvalidError, #removeAuthToken`, async (t) => {
      const c = await connectedClient(t, kind);
      const err = await rejection(c.authenticate(jwt.sign({ username: 'eve' }, OTHER_KEY)), '#authenticate');
      assert.equal(err.name, 'AuthTokenInvalidError');
      const request = c.outboundPackets().find((p) => p.event === '#authenticate');
      const reply = c.inboundPackets().find((p) => p.rid === request.cid);
      // v20 servers send the error alone (v14 servers also sent `data`).
      assert.deepStrictEqual(reply, {
        rid: request.cid,
        error: { name: 'AuthTokenInvalidError', message: 'invalid signature', isBadToken: true },
      });
      await removeAuthTokenPush(c);
      assert.equal(c.authState, 'unauthenticated');
      assert.equal(c.storedToken, null);
      await assertUnauthenticatedOnServer(c, 'after a bad #authenticate');
      assert.deepEqual(c.closes, [], 'the connection stays open');
    }, { skip });

    suite.test(`${kind} #authenticate with a bad token after login: the server drops the old token`, async (t) => {
      const c = await connectedClient(t, kind);
      await c.invoke('login', { username: 'fay' });
      await c.logged('authenticate');
      assert.equal((await c.invoke('whoami')).username, 'fay');
      await waitFor(() => c.storedToken, 2000, 'the login token stored');
      const err = await rejection(c.authenticate('garbage'), '#authenticate');
      assert.equal(err.name, 'AuthTokenInvalidError');
      assert.equal(err.message, 'jwt malformed');
      await removeAuthTokenPush(c);
      await waitFor(() => c.storedToken === null, 2000, 'the client to drop the login token');
      assert.equal(c.authState, 'unauthenticated');
      await assertUnauthenticatedOnServer(c, 'after a bad #authenticate that followed a login');
    }, { skip });

    suite.test(`${kind} deauthenticate: the client drops its token, the server forgets it`, async (t) => {
      const c = await connectedClient(t, kind);
      await c.invoke('login', { username: 'gil' });
      await c.logged('authenticate');
      await waitFor(() => c.storedToken, 2000, 'the login token stored');
      assert.equal((await c.invoke('whoami')).username, 'gil');
      await c.deauthenticate();
      assert.deepStrictEqual(c.outboundPackets().filter((p) => p.event === '#removeAuthToken'), [{ event: '#removeAuthToken' }]);
      assert.equal(c.storedToken, null);
      assert.equal(c.authState, 'unauthenticated');
      await c.logged('deauthenticate');
      await assertUnauthenticatedOnServer(c, 'after deauthenticate');
      await sleep(100);
      assert.deepStrictEqual(c.inboundEvents('#removeAuthToken'), [], 'the server does not echo #removeAuthToken');
      assert.deepEqual(c.closes, [], 'the connection stays open');
    }, { skip });

    suite.test(`${kind} login: #setAuthToken carries a token {username, iat, exp = iat + 86400}`, async (t) => {
      const c = await connectedClient(t, kind);
      const before = nowSeconds();
      assert.deepStrictEqual(await c.invoke('login', { username: 'bob' }), { username: 'bob' });
      const event = await c.logged('authenticate');
      const frames = c.inboundEvents('#setAuthToken');
      assert.equal(frames.length, 1, JSON.stringify(frames));
      // A transmit (no cid) whose data is exactly {token}.
      assert.deepStrictEqual(Object.keys(frames[0]).sort(), ['data', 'event']);
      assert.deepStrictEqual(Object.keys(frames[0].data), ['token']);
      const token = frames[0].data.token;
      assert.equal(typeof token, 'string');
      assert.equal(event.signedAuthToken, token);
      assert.equal(c.signedAuthToken, token);
      assert.equal(c.authState, 'authenticated');
      await waitFor(() => c.storedToken === token, 2000, 'the client to store the token');
      const payload = c.authToken;
      assert.deepStrictEqual(Object.keys(payload).sort(), ['exp', 'iat', 'username'], JSON.stringify(payload));
      assert.equal(payload.username, 'bob');
      assert.ok(payload.iat >= before - 1 && payload.iat <= nowSeconds() + 1, `iat ${payload.iat} is now`);
      assert.equal(payload.exp - payload.iat, 86400, 'the default expiry');
      // Signed with the server's key, HS256.
      assert.equal(jwt.decode(token, { complete: true }).header.alg, 'HS256');
      assert.deepStrictEqual(jwt.verify(token, authKey, { algorithms: ['HS256'] }), payload);
      assert.deepStrictEqual(await c.invoke('whoami'), payload);
    }, { skip });

    suite.test(`${kind} token expiry while connected: #removeAuthToken, then AuthError`, async (t) => {
      const c = await connectedClient(t, kind);
      // exp = now (whole seconds) + 2: between 1 and 2 s from now.
      assert.deepStrictEqual(await c.invoke('loginFor', { username: 'hal', seconds: 2 }), { username: 'hal' });
      await c.logged('authenticate');
      const { exp } = c.authToken;
      assert.equal(typeof exp, 'number');
      assert.ok(exp * 1000 > Date.now(), 'not expired yet');
      assert.equal((await c.invoke('whoami')).username, 'hal');
      // The server checks on each inbound packet and pong; pings come every few hundred ms.
      await waitFor(() => c.inboundEvents('#removeAuthToken').length >= 1, 5000, '#removeAuthToken after expiry');
      const lateness = Date.now() - exp * 1000;
      t.note(`#removeAuthToken ${lateness} ms after exp`);
      assert.ok(lateness >= 0, `not before exp (${lateness} ms)`);
      assert.deepStrictEqual(c.inboundEvents('#removeAuthToken'), [{ event: '#removeAuthToken' }]);
      await waitFor(() => c.authState === 'unauthenticated' && c.storedToken === null, 2000, 'the client to drop the token');
      await assertUnauthenticatedOnServer(c, 'after expiry');
      assert.deepEqual(c.closes, [], 'the connection stays open');
    }, { skip, timeout: 12000 });
  }

  suite.test('raw: #authenticate without a cid closes with 4008', async (t) => {
    const r = raw(t);
    await r.handshake(1);
    r.send(JSON.stringify({ event: '#authenticate', data: validToken('ivy') }));
    const close = await r.closed();
    assert.equal(close.code, 4008, `close ${JSON.stringify(close)}, frames ${JSON.stringify(r.frames)}`);
    assert.deepStrictEqual(r.packets().filter((p) => p.rid != null && p.rid !== 1), [], 'no reply');
  });
}

module.exports = { register };
