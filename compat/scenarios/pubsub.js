// Pub/sub scenarios of the compatibility suite: subscribe (with and without data), publish as an
// invoke and as a transmit, unsubscribe, kick-out, resubscription after a reconnect, the
// private/* access rule, and raw frames that pin the wire format. Registered by suite.js, which
// passes its helpers in `env`; every client-level scenario runs with the v20 and the v14 client.
//
// The official server does not order replies with respect to its pushes (#publish, #kickOut,
// #setAuthToken): these tests wait for each on its own and never assume one comes first.

'use strict';

const assert = require('node:assert/strict');
const { waitFor, sleep } = require('../lib/clients');

function register(suite, env) {
  const { KINDS, ENDPOINT, NO_V1, isSockyard, client, connectedClient, raw, rejection, closeMe } = env;

  // Tests run concurrently against one server: every test uses channels of its own.
  let counter = 0;
  const channelName = (kind, tag) => `${kind}-${tag}-${++counter}-${Math.random().toString(36).slice(2, 8)}`;

  // Waits for the client's verdict on `channel` logged after position `mark` of its event log:
  // resolves on `subscribe`, fails the test on `subscribeFail`.
  async function subscribedSince(c, channel, mark) {
    const entry = await waitFor(
      () => c.log.slice(mark).find((e) => (e.event === 'subscribe' || e.event === 'subscribeFail') && e.channel === channel),
      4000,
      () => `subscribe or subscribeFail for ${channel} (log: ${c.logSummary()})`,
    );
    if (entry.event === 'subscribeFail') {
      throw new assert.AssertionError({
        message: `subscribing to ${channel} failed: ${entry.error.name}: ${entry.error.message}`,
      });
    }
  }

  // Subscribes and waits until the server confirmed; returns the list publications go to.
  async function subscribe(c, channel, options) {
    const mark = c.log.length;
    const messages = c.subscribe(channel, options);
    await subscribedSince(c, channel, mark);
    return messages;
  }

  // The reply packet to the client's n-th outbound packet for `event`.
  function replyTo(c, event, n = 1) {
    const request = c.outboundPackets().filter((p) => p.event === event)[n - 1];
    assert.ok(request, `outbound ${event} #${n} among ${JSON.stringify(c.outbound)}`);
    return { request, reply: c.inboundPackets().find((p) => p.rid === request.cid) };
  }

  const publishFrame = (channel, data) => ({ event: '#publish', data: { channel, data } });

  for (const kind of KINDS) {
    const skip = ENDPOINT[kind] ? undefined : NO_V1;

    suite.test(`${kind} subscribe with and without data; invokePublish reaches every subscriber, publisher too`, async (t) => {
      const ch = channelName(kind, 'invoke');
      const [a, b] = await Promise.all([connectedClient(t, kind), connectedClient(t, kind)]);
      const aMessages = await subscribe(a, ch);
      const bMessages = await subscribe(b, ch, { data: { hello: kind } });
      // #subscribe is an invoke; `data` is sent only when given, and success is a bare {rid}.
      const aSub = replyTo(a, '#subscribe');
      assert.deepStrictEqual(aSub.request, { event: '#subscribe', data: { channel: ch }, cid: aSub.request.cid });
      assert.equal(typeof aSub.request.cid, 'number');
      assert.deepStrictEqual(aSub.reply, { rid: aSub.request.cid });
      const bSub = replyTo(b, '#subscribe');
      assert.deepStrictEqual(bSub.request.data, { channel: ch, data: { hello: kind } });
      assert.deepStrictEqual(bSub.reply, { rid: bSub.request.cid });
      assert.equal(a.channelState(ch), 'subscribed');
      assert.equal(b.channelState(ch), 'subscribed');

      const payload = { n: 1, text: 'héllo ✓', list: [1, null, { deep: true }] };
      assert.equal(await a.invokePublish(ch, payload), undefined, 'invokePublish resolves without data');
      await waitFor(() => aMessages.length >= 1 && bMessages.length >= 1, 2000, 'the publication on both clients');
      await sleep(100); // any duplicate would arrive by now
      assert.deepStrictEqual(aMessages, [payload], 'the publisher receives its own publication');
      assert.deepStrictEqual(bMessages, [payload]);
      // The wire: the fan-out frame has no cid; the publish invoke is answered by a bare {rid}.
      assert.deepStrictEqual(a.publications(ch), [publishFrame(ch, payload)]);
      assert.deepStrictEqual(b.publications(ch), [publishFrame(ch, payload)]);
      const pub = replyTo(a, '#publish');
      assert.deepStrictEqual(pub.request, { event: '#publish', data: { channel: ch, data: payload }, cid: pub.request.cid });
      assert.equal(typeof pub.request.cid, 'number');
      assert.deepStrictEqual(pub.reply, { rid: pub.request.cid });
      assert.deepEqual(a.errors, [], 'no client errors');
    }, { skip });

    suite.test(`${kind} transmitPublish reaches every subscriber in order; no cid, no reply`, async (t) => {
      const ch = channelName(kind, 'transmit');
      const [a, b] = await Promise.all([connectedClient(t, kind), connectedClient(t, kind)]);
      const aMessages = await subscribe(a, ch);
      const bMessages = await subscribe(b, ch);
      const sent = ['first', { second: 2 }, 3, null];
      for (const data of sent) {
        a.transmitPublish(ch, data);
      }
      await waitFor(() => aMessages.length >= sent.length && bMessages.length >= sent.length, 2000, 'four publications on both clients');
      assert.deepStrictEqual(aMessages, sent, 'in order, to the publisher too');
      assert.deepStrictEqual(bMessages, sent, 'in order');
      assert.deepStrictEqual(b.publications(ch), sent.map((data) => publishFrame(ch, data)));
      const pubs = a.outboundPackets().filter((p) => p.event === '#publish');
      assert.deepStrictEqual(pubs, sent.map((data) => ({ event: '#publish', data: { channel: ch, data } })), 'no cid');
      // Nothing answers a transmit: after a round trip, every rid answers one of our cids.
      assert.equal(await a.invoke('echo', 'sync'), 'sync');
      const rids = a.inboundPackets().filter((p) => p.rid != null).map((p) => p.rid).sort();
      const cids = a.outboundPackets().filter((p) => p.cid != null).map((p) => p.cid).sort();
      assert.deepStrictEqual(rids, cids, 'replies only for invokes');
    }, { skip });

    suite.test(`${kind} unsubscribe: a transmitted #unsubscribe, no deliveries afterwards`, async (t) => {
      const ch = channelName(kind, 'unsub');
      const [a, b] = await Promise.all([connectedClient(t, kind), connectedClient(t, kind)]);
      const aMessages = await subscribe(a, ch);
      const bMessages = await subscribe(b, ch);
      await b.invokePublish(ch, 'before');
      await waitFor(() => aMessages.length >= 1 && bMessages.length >= 1, 2000, 'the first publication');

      a.unsubscribe(ch);
      assert.equal(a.channelState(ch), 'unsubscribed');
      // The client sends the bare channel name, as a transmit.
      assert.deepStrictEqual(a.outboundPackets().filter((p) => p.event === '#unsubscribe'), [{ event: '#unsubscribe', data: ch }]);
      // The server handles a connection's packets in order: once this reply is in, a is out.
      assert.equal(await a.invoke('echo', 'sync'), 'sync');
      await b.invokePublish(ch, 'after');
      await waitFor(() => bMessages.length >= 2, 2000, 'the second publication on b');
      await sleep(150);
      // The client drops publications for channels it left, so check the frames themselves.
      assert.deepStrictEqual(
        a.publications(ch).map((p) => p.data.data),
        ['before'],
        'no #publish frame for the channel after #unsubscribe',
      );
      assert.deepStrictEqual(a.inboundPackets().filter((p) => p.error), [], 'no error reply');

      // Subscribing again works and delivers again.
      const again = await subscribe(a, ch);
      await b.invokePublish(ch, 'again');
      await waitFor(() => again.length >= 1, 2000, 'a publication after subscribing again');
      assert.deepStrictEqual(again, ['again']);
    }, { skip });

    suite.test(`${kind} kickOut: the client sees kickOut, the channel is unsubscribed, no deliveries`, async (t) => {
      const ch = channelName(kind, 'kick');
      const other = channelName(kind, 'kept');
      const [a, b] = await Promise.all([connectedClient(t, kind), connectedClient(t, kind)]);
      await subscribe(a, ch);
      const kept = await subscribe(a, other);
      const bMessages = await subscribe(b, ch);

      assert.equal(await a.invoke('kickMe', { channel: ch, message: 'bye now' }), undefined);
      const kick = await a.logged('kickOut', (e) => e.channel === ch);
      assert.equal(kick.message, 'bye now');
      assert.deepStrictEqual(a.inboundEvents('#kickOut'), [{ event: '#kickOut', data: { channel: ch, message: 'bye now' } }]);
      assert.equal(a.channelState(ch), 'unsubscribed');
      assert.equal(a.channelState(other), 'subscribed', 'other channels are kept');
      assert.deepStrictEqual(a.outboundPackets().filter((p) => p.event === '#unsubscribe'), [], 'the client sends no #unsubscribe');

      await b.invokePublish(ch, 'after the kick');
      await b.invokePublish(other, 'still here');
      await waitFor(() => bMessages.length >= 1 && kept.length >= 1, 2000, 'deliveries to b and on the kept channel');
      await sleep(150);
      assert.deepStrictEqual(a.publications(ch), [], 'no #publish frame for the channel after the kick');
      assert.deepStrictEqual(kept, ['still here']);
    }, { skip });

    suite.test(`${kind} reconnect: channels are subscribed again automatically; publications arrive`, async (t) => {
      const ch1 = channelName(kind, 'resub');
      const ch2 = channelName(kind, 'resub-data');
      const a = client(t, kind, { autoReconnect: true });
      await a.connected(1);
      const m1 = await subscribe(a, ch1);
      const m2 = await subscribe(a, ch2, { data: { again: true } });
      const subscribesBefore = a.outboundPackets().filter((p) => p.event === '#subscribe').length;
      assert.equal(subscribesBefore, 2);

      const mark = a.log.length;
      t.note(await closeMe(a, { code: 4001, reason: 'resubscribe please' }));
      assert.equal((await a.closed(1)).code, 4001);
      await a.connected(2, 3000);
      await subscribedSince(a, ch1, mark);
      await subscribedSince(a, ch2, mark);
      // The client sent its #subscribe frames again, data included.
      const resent = a.outboundPackets().filter((p) => p.event === '#subscribe').slice(subscribesBefore);
      assert.deepStrictEqual(
        resent.map((p) => p.data).sort((x, y) => x.channel.localeCompare(y.channel)),
        [{ channel: ch1 }, { channel: ch2, data: { again: true } }].sort((x, y) => x.channel.localeCompare(y.channel)),
      );
      assert.equal(a.channelState(ch1), 'subscribed');

      // A server-side publication and one from another client both arrive.
      await a.invoke('publishFromServer', { channel: ch1, data: { from: 'server' } });
      const b = await connectedClient(t, kind);
      await b.invokePublish(ch2, 'from b');
      await waitFor(() => m1.length >= 1 && m2.length >= 1, 2000, 'publications after the reconnect');
      assert.deepStrictEqual(m1, [{ from: 'server' }]);
      assert.deepStrictEqual(m2, ['from b']);
      assert.deepStrictEqual(a.publications(ch1), [publishFrame(ch1, { from: 'server' })], 'a server-side publication has the same frame');
    }, { skip });

    suite.test(`${kind} private channel: refused before login (AuthError), allowed after`, async (t) => {
      const ch = `private/${channelName(kind, 'secret')}`;
      const a = await connectedClient(t, kind);
      a.subscribe(ch);
      const fail = await a.logged('subscribeFail', (e) => e.channel === ch);
      assert.equal(fail.error.name, 'AuthError');
      t.note(`subscribe refused: ${fail.error.name}: ${fail.error.message}`);
      const sub = replyTo(a, '#subscribe');
      assert.ok(sub.reply && sub.reply.error, `an error reply: ${JSON.stringify(sub.reply)}`);
      assert.equal(sub.reply.error.name, 'AuthError');
      assert.ok(!('stack' in sub.reply.error), 'no stack on the wire');
      assert.equal(a.channelState(ch), 'unsubscribed');
      const pubErr = await rejection(a.invokePublish(ch, 'too early'), 'publish before login');
      assert.equal(pubErr.name, 'AuthError');

      await a.invoke('login', { username: 'pat' });
      const messages = await subscribe(a, ch);
      await a.invokePublish(ch, 'secret');
      await waitFor(() => messages.length >= 1, 2000, 'the private publication');
      assert.deepStrictEqual(messages, ['secret']);
      assert.deepStrictEqual(a.publications(ch).map((p) => p.data.data), ['secret'], 'the refused publish was not delivered');
    }, { skip });
  }

  // ---- Raw frames ----

  const rawPublications = (r, channel) => r.packets().filter((p) => p.event === '#publish' && p.data && p.data.channel === channel);

  suite.test('raw: a transmitted #subscribe (no cid) subscribes nobody', async (t) => {
    const ch = channelName('raw', 'transmit-subscribe');
    const r = raw(t);
    await r.handshake(1);
    r.send(JSON.stringify({ event: '#subscribe', data: { channel: ch } }));
    assert.deepStrictEqual(await r.call({ event: '#publish', data: { channel: ch, data: 'unseen' }, cid: 2 }), { rid: 2 });
    await sleep(200);
    assert.deepStrictEqual(rawPublications(r, ch), [], 'not subscribed');
    // Control: the invoke form subscribes.
    assert.deepStrictEqual(await r.call({ event: '#subscribe', data: { channel: ch }, cid: 3 }), { rid: 3 });
    assert.deepStrictEqual(await r.call({ event: '#publish', data: { channel: ch, data: 'seen' }, cid: 4 }), { rid: 4 });
    await waitFor(() => rawPublications(r, ch).length >= 1, 2000, 'the publication');
    assert.deepStrictEqual(rawPublications(r, ch), [{ event: '#publish', data: { channel: ch, data: 'seen' } }]);
    const rids = r.packets().filter((p) => p.rid != null).map((p) => p.rid);
    assert.deepStrictEqual(rids.sort(), [1, 2, 3, 4], 'the transmitted #subscribe got no reply');
  });

  suite.test('raw: a publication without data carries no data field', async (t) => {
    const ch = channelName('raw', 'no-data');
    const r = raw(t);
    await r.handshake(1);
    assert.deepStrictEqual(await r.call({ event: '#subscribe', data: { channel: ch }, cid: 2 }), { rid: 2 });
    assert.deepStrictEqual(await r.call({ event: '#publish', data: { channel: ch }, cid: 3 }), { rid: 3 });
    await waitFor(() => rawPublications(r, ch).length >= 1, 2000, 'the publication');
    // The official server publishes `undefined`, which JSON leaves out; a v20 subscriber gets
    // undefined, not null.
    assert.deepStrictEqual(rawPublications(r, ch), [{ event: '#publish', data: { channel: ch } }]);
  });

  suite.test('raw: #unsubscribe as an invoke: {rid} when subscribed, BrokerError when not', async (t) => {
    const ch = channelName('raw', 'unsubscribe');
    const r = raw(t);
    await r.handshake(1);
    assert.deepStrictEqual(await r.call({ event: '#subscribe', data: { channel: ch }, cid: 2 }), { rid: 2 });
    assert.deepStrictEqual(await r.call({ event: '#unsubscribe', data: ch, cid: 3 }), { rid: 3 });
    for (const [cid, channel] of [[4, ch], [5, channelName('raw', 'never-subscribed')]]) {
      const reply = await r.call({ event: '#unsubscribe', data: channel, cid });
      assert.ok(reply.error, `an error reply: ${JSON.stringify(reply)}`);
      assert.equal(reply.error.name, 'BrokerError');
      // The tail of the message names the socket and differs in wording between the servers.
      const prefix = `Failed to unsubscribe socket from the ${channel} channel - `;
      assert.ok(reply.error.message.startsWith(prefix), `message starts with "${prefix}": ${reply.error.message}`);
      if (cid === 5) {
        t.note(reply.error.message);
      }
    }
    assert.deepStrictEqual(await r.call({ event: 'echo', data: 'open', cid: 6 }), { rid: 6, data: 'open' });
  });

  // Malformed #subscribe and #publish invokes get InvalidActionError with SocketCluster's texts;
  // their transmit forms get no reply. The connection stays open.
  const MALFORMED = {
    '#subscribe': {
      message: 'Subscribe channel name was malformatted',
      data: [undefined, null, {}, { channel: 5 }, { channel: null }, 42, ['a']],
    },
    '#publish': {
      message: 'Publish channel name was malformatted',
      data: [undefined, null, {}, { channel: 5 }, { data: 1 }, 42, 'a-channel', ['a']],
    },
  };

  for (const [event, { message, data: cases }] of Object.entries(MALFORMED)) {
    suite.test(`raw: malformed ${event} → InvalidActionError "${message}"`, async (t) => {
      const r = raw(t);
      await r.handshake(1);
      let cid = 1;
      for (const data of cases) {
        cid += 1;
        const packet = data === undefined ? { event, cid } : { event, data, cid };
        const reply = await r.call(packet);
        assert.deepStrictEqual(
          reply,
          { rid: cid, error: { name: 'InvalidActionError', message } },
          `reply to ${JSON.stringify(packet)}`,
        );
        r.send(JSON.stringify(data === undefined ? { event } : { event, data }));
      }
      cid += 1;
      assert.deepStrictEqual(await r.call({ event: 'echo', data: 'open', cid }), { rid: cid, data: 'open' });
      const rids = r.packets().filter((p) => p.rid != null).map((p) => p.rid);
      assert.deepStrictEqual(rids, Array.from({ length: cid }, (_, i) => i + 1), 'the transmitted forms got no reply');
      assert.equal(r.close, null, 'still open');
    });
  }

  // Protocol v1 servers (v14) took a bare string as the channel of #subscribe; the official v20
  // server no longer does, Sockyard still does (for old clients). Pinned so the difference stays
  // deliberate.
  suite.test('raw: #subscribe with a bare string channel', async (t) => {
    const ch = channelName('raw', 'bare');
    const r = raw(t);
    await r.handshake(1);
    const reply = await r.call({ event: '#subscribe', data: ch, cid: 2 });
    t.note(JSON.stringify(reply));
    if (isSockyard) {
      assert.deepStrictEqual(reply, { rid: 2 });
    } else {
      assert.deepStrictEqual(reply, { rid: 2, error: { name: 'InvalidActionError', message: MALFORMED['#subscribe'].message } });
    }
  });
}

module.exports = { register };
