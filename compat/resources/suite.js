// The resource compatibility suite: proves that the official clients — socketcluster-client 20
// and 14, and the CTProto client of ../ctproto — use Sockyard's declared resources unchanged,
// through all three addresses of every operation (route names, REST paths, sockful's
// {action, payload}), with children, list queries, live change events, optimistic concurrency,
// validation errors, and the ban on client publications in resource channels.
//
// Usage: node resources/suite.js --url ws://HOST:PORT/socketcluster/ --ct-url ws://HOST:PORT/ctproto
//                                [--remote-method NAME] [--jobs N] [--filter TEXT]
// Environment fallbacks: RES_URL, RES_CT_URL, RES_REMOTE_METHOD, RES_JOBS, RES_FILTER.
//
// The server must declare the demo's resources (sockyard/config/default.toml): `creature`
// {name: string required, age: integer min 0}, `album` {title: string required} and `song`
// {title: string required} with parent `album`, all public, with `require_version = true`,
// timestamps, no extra fields, and the default page size of 100. The CTProto endpoint must
// authorize {username}. With --remote-method NAME, `creature` must also have that remote method,
// behaving like the one the Cargo test registers: with {text: "…"} it answers
// {resource: "creature", text: <text in upper case>}; otherwise it fails with an error named
// `ShoutError`, message "nothing to shout", and the payload it got as `got`. Without the option
// the remote-method tests are skipped.
//
// Tests run concurrently against one store, so each works on records of its own (names tagged
// with the run and the test) and filters the shared `creature` channel by id. Exit status: 0
// when no test failed.

'use strict';

const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { Suite } = require('../lib/harness');
const { waitFor, sleep } = require('../lib/clients');
const { option } = require('../lib/options');
const { KINDS, ReplyError, openPeer } = require('./peers');

const scUrl = option('url', 'RES_URL', null);
const ctUrl = option('ct-url', 'RES_CT_URL', null);
const remoteMethod = option('remote-method', 'RES_REMOTE_METHOD', null);
const jobs = Number(option('jobs', 'RES_JOBS', '4'));
const filter = option('filter', 'RES_FILTER', null);

if (!scUrl || !ctUrl) {
  console.error('usage: node resources/suite.js --url ws://HOST:PORT/socketcluster/ --ct-url ws://HOST:PORT/ctproto [--remote-method NAME]');
  process.exit(2);
}

const URLS = { sc: scUrl, ct: ctUrl };
const DEFAULT_LIMIT = 100;
const suite = new Suite({ jobs, filter, defaultTimeout: 10000 });

// ---------------------------------------------------------------------------------------------
// Helpers

const RUN = crypto.randomBytes(4).toString('hex');
let counter = 0;
// A name no other test (or earlier run on the same store) uses.
const tagged = (label) => `${RUN}-${label}-${++counter}`;

const peer = (t, kind) => openPeer(t, kind, URLS);
// The next kind after `kind`, for a listener of another protocol or generation.
const otherKind = (kind) => KINDS[(KINDS.indexOf(kind) + 1) % KINDS.length];

// Awaits an error reply: fails if `promise` resolves, rethrows anything that is not a reply.
async function replyError(promise, what) {
  let value;
  try {
    value = await promise;
  } catch (err) {
    if (err instanceof ReplyError) {
      return err;
    }
    throw err;
  }
  assert.fail(`${what}: expected an error reply, got ${JSON.stringify(value)}`);
}

// Asserts a `NotFound` reply for `resource` `id`.
async function assertNotFound(promise, resource, id, what) {
  const err = await replyError(promise, what);
  assert.equal(err.name, 'NotFound', `${what}: ${JSON.stringify(err.body)}`);
  assert.ok(err.message.includes(resource) && err.message.includes(String(id)), `${what}: the message names ${resource} ${id}: ${err.message}`);
}

const SYSTEM_KEYS = ['id', 'version', 'ctime', 'mtime'];

// Asserts `record` is exactly {id, version, ctime, mtime, ...fields}: a positive integer id,
// `version`, and ctime/mtime in milliseconds around now, mtime never before ctime.
function assertRecord(record, fields, version, what) {
  assert.ok(record && typeof record === 'object' && !Array.isArray(record), `${what}: a record, got ${JSON.stringify(record)}`);
  assert.deepStrictEqual(Object.keys(record).sort(), [...SYSTEM_KEYS, ...Object.keys(fields)].sort(), `${what}: keys of ${JSON.stringify(record)}`);
  assert.ok(Number.isInteger(record.id) && record.id > 0, `${what}: id ${record.id}`);
  assert.equal(record.version, version, `${what}: version`);
  for (const key of ['ctime', 'mtime']) {
    assert.ok(Number.isInteger(record[key]) && Math.abs(record[key] - Date.now()) < 120000, `${what}: ${key} ${record[key]} is milliseconds around now`);
  }
  assert.ok(record.mtime >= record.ctime, `${what}: mtime ${record.mtime} before ctime ${record.ctime}`);
  for (const [key, value] of Object.entries(fields)) {
    assert.deepStrictEqual(record[key], value, `${what}: field ${key}`);
  }
}

// Asserts a successor of `before` (same id and ctime, next version, mtime not earlier) with
// exactly `fields`.
function assertNext(record, before, fields, what) {
  assertRecord(record, fields, before.version + 1, what);
  assert.equal(record.id, before.id, `${what}: id`);
  assert.equal(record.ctime, before.ctime, `${what}: ctime kept`);
  assert.ok(record.mtime >= before.mtime, `${what}: mtime ${record.mtime} moves forward from ${before.mtime}`);
}

// The change events in `messages` about `resource` record `id` (other tests share the channel).
const eventsFor = (messages, id) => messages.filter((m) => m && m.data && m.data.id === id);

// Waits until `messages` holds a change event `event` for `id`.
async function eventArrives(messages, id, event, what) {
  await waitFor(
    () => eventsFor(messages, id).some((m) => m.event === event),
    3000,
    () => `${what}: a ${event} event for ${id} (got ${JSON.stringify(eventsFor(messages, id))})`,
  );
}

// Asserts a validation error body: name, a message, and `expected` as the list of
// {attribute, property, expected, actual} (any order), each with a message of its own.
function assertValidation(err, expected, what) {
  assert.equal(err.name, 'ValidationError', `${what}: ${JSON.stringify(err.body)}`);
  assert.deepStrictEqual(Object.keys(err.body).sort(), ['errors', 'message', 'name'], `${what}: the error's fields ${JSON.stringify(err.body)}`);
  assert.ok(typeof err.message === 'string' && err.message.length > 0, `${what}: a message`);
  assert.ok(Array.isArray(err.body.errors), `${what}: errors is an array`);
  for (const entry of err.body.errors) {
    assert.deepStrictEqual(Object.keys(entry).sort(), ['actual', 'attribute', 'expected', 'message', 'property'], `${what}: an error entry ${JSON.stringify(entry)}`);
    assert.ok(typeof entry.message === 'string' && entry.message.length > 0, `${what}: entry message`);
  }
  const key = (e) => `${e.property}/${e.attribute}`;
  const got = err.body.errors.map(({ message, ...rest }) => rest).sort((a, b) => key(a).localeCompare(key(b)));
  const want = [...expected].sort((a, b) => key(a).localeCompare(key(b)));
  assert.deepStrictEqual(got, want, `${what}: errors`);
}

// The three addresses of each creature operation, as [label, route, data] for a peer's call.
const ADDRESS = {
  route: {
    create: (fields) => ['creature/create', fields],
    get: (id) => ['creature/get', { id }],
    list: (query) => ['creature/list', query],
    update: (id, body) => ['creature/update', { id, ...body }],
    patch: (id, body) => ['creature/patch', { id, ...body }],
    destroy: (id) => ['creature/destroy', { id }],
  },
  rest: {
    create: (fields) => ['POST /creature', fields],
    get: (id) => [`GET /creature/${id}`, undefined],
    list: (query) => ['GET /creature', query],
    update: (id, body) => [`PUT /creature/${id}`, body],
    patch: (id, body) => [`PATCH /creature/${id}`, body],
    destroy: (id) => [`DELETE /creature/${id}`, undefined],
  },
  sockful: {
    create: (fields) => ['creature', { action: 'create', payload: fields }],
    get: (id) => ['creature', { action: 'get', payload: { id } }],
    // sockful's `all` answers the page's records only.
    list: (query) => ['creature', { action: 'all', payload: query }],
    update: (id, body) => ['creature', { action: 'update', payload: { id, ...body } }],
    patch: (id, body) => ['creature', { action: 'patch', payload: { id, ...body } }],
    destroy: (id) => ['creature', { action: 'destroy', payload: id }],
  },
};
const ADDRESSES = Object.keys(ADDRESS);

// Runs `operation` on `p` through `address`.
const op = (p, address, operation, ...args) => p.call(...ADDRESS[address][operation](...args));

// Lists through `address`, as a page {data, total, limit, skip, next?} (sockful: its array).
async function list(p, address, query) {
  return op(p, address, 'list', query);
}

// ---------------------------------------------------------------------------------------------
// Every operation through each address, with each client

for (const kind of KINDS) {
  for (const address of ADDRESSES) {
    suite.test(`${kind} ${address}: create, get, list, update, patch, destroy`, async (t) => {
      const p = await peer(t, kind);
      const name = tagged(`${kind}-${address}`);

      const created = await op(p, address, 'create', { name, age: 3 });
      assertRecord(created, { name, age: 3 }, 1, 'create');
      assert.equal(created.mtime, created.ctime, 'a new record: mtime = ctime');
      assert.deepStrictEqual(await op(p, address, 'get', created.id), created, 'get returns the created record');

      const page = await list(p, address, { name });
      if (address === 'sockful') {
        assert.deepStrictEqual(page, [created], 'all: the matching records');
      } else {
        assert.deepStrictEqual(page, { data: [created], total: 1, limit: DEFAULT_LIMIT, skip: 0 }, 'list: one page, no next');
      }

      // update replaces the fields: age goes.
      const updated = await op(p, address, 'update', created.id, { version: 1, name: `${name}-u` });
      assertNext(updated, created, { name: `${name}-u` }, 'update');
      // patch changes only what it names.
      const patched = await op(p, address, 'patch', created.id, { version: 2, age: 9 });
      assertNext(patched, updated, { name: `${name}-u`, age: 9 }, 'patch');
      // patch with null removes a field.
      const cleared = await op(p, address, 'patch', created.id, { version: 3, age: null });
      assertNext(cleared, patched, { name: `${name}-u` }, 'patch with null');
      assert.deepStrictEqual(await op(p, address, 'get', created.id), cleared, 'get after the writes');

      const destroyed = await op(p, address, 'destroy', created.id);
      assert.deepStrictEqual(destroyed, cleared, 'destroy returns the record as it was');
      await assertNotFound(op(p, address, 'get', created.id), 'creature', created.id, 'get after destroy');
      await assertNotFound(op(p, address, 'destroy', created.id), 'creature', created.id, 'destroy again');
      await assertNotFound(op(p, address, 'update', created.id, { version: 4, name }), 'creature', created.id, 'update a missing record');
      await assertNotFound(op(p, address, 'patch', created.id, { version: 4, age: 1 }), 'creature', created.id, 'patch a missing record');
      const after = await list(p, address, { name: `${name}-u` });
      assert.deepStrictEqual(address === 'sockful' ? after : after.data, [], 'nothing left to list');
    });
  }

  suite.test(`${kind} sockful: get and destroy take a bare id; unknown actions are NotFound`, async (t) => {
    const p = await peer(t, kind);
    const name = tagged(`${kind}-bare`);
    const created = await p.call('creature', { action: 'create', payload: { name } });
    assertRecord(created, { name }, 1, 'create');
    assert.deepStrictEqual(await p.call('creature', { action: 'get', payload: created.id }), created, 'get with a bare id');
    assert.deepStrictEqual(await p.call('creature', { action: 'get', payload: String(created.id) }), created, 'get with the id as text');
    assert.deepStrictEqual(await p.call('creature', { action: 'destroy', payload: created.id }), created, 'destroy with a bare id');
    await assertNotFound(p.call('creature', { action: 'get', payload: created.id }), 'creature', created.id, 'get after destroy');
    const unknown = await replyError(p.call('creature', { action: 'fly', payload: {} }), 'unknown action');
    assert.equal(unknown.name, 'NotFound', JSON.stringify(unknown.body));
    assert.ok(unknown.message.includes('fly'), `the message names the action: ${unknown.message}`);
  });

  suite.test(`${kind} update and patch need the current version`, async (t) => {
    const p = await peer(t, kind);
    const name = tagged(`${kind}-version`);
    const created = await p.call('creature/create', { name, age: 1 });
    for (const address of ADDRESSES) {
      for (const operation of ['update', 'patch']) {
        const missing = await replyError(op(p, address, operation, created.id, { name: 'x', age: 2 }), `${address} ${operation} without version`);
        assert.ok(missing.message.includes('version'), `${address} ${operation} without version: ${JSON.stringify(missing.body)}`);
      }
    }
    const current = await p.call('creature/patch', { id: created.id, version: 1, age: 2 });
    assert.equal(current.version, 2);
    for (const address of ADDRESSES) {
      for (const operation of ['update', 'patch']) {
        const stale = await replyError(op(p, address, operation, created.id, { version: 1, name: 'stale' }), `${address} ${operation} with a stale version`);
        assert.equal(stale.name, 'Conflict', `${address} ${operation} with a stale version: ${JSON.stringify(stale.body)}`);
        assert.ok(stale.message.length > 0);
      }
    }
    assert.deepStrictEqual(await p.call('creature/get', { id: created.id }), current, 'refused writes changed nothing');
  });
}

// ---------------------------------------------------------------------------------------------
// List queries

for (const kind of KINDS) {
  suite.test(`${kind} list: operators, $sort, $limit, $skip, paging with next/$after, through each address`, async (t) => {
    const p = await peer(t, kind);
    const tag = tagged(`${kind}-list`);
    const ages = [0, 10, 20, 20, 40];
    const made = [];
    for (const [i, age] of ages.entries()) {
      made.push(await p.call('creature/create', { name: `${tag}-${i}`, age }));
    }
    const names = made.map((r) => r.name);
    const mine = { $in: names };
    const byId = (a, b) => a.id - b.id;
    const ids = (records) => records.map((r) => r.id);

    // Each operator against the same filter done locally.
    const cases = [
      [{ age: 20 }, (r) => r.age === 20],
      [{ age: { $eq: 10 } }, (r) => r.age === 10],
      [{ age: { $ne: 20 } }, (r) => r.age !== 20],
      [{ age: { $lt: 20 } }, (r) => r.age < 20],
      [{ age: { $lte: 20 } }, (r) => r.age <= 20],
      [{ age: { $gt: 10 } }, (r) => r.age > 10],
      [{ age: { $gte: 20, $lt: 40 } }, (r) => r.age >= 20 && r.age < 40],
      [{ age: { $in: [0, 40] } }, (r) => r.age === 0 || r.age === 40],
      [{ age: { $nin: [0, 40] } }, (r) => r.age !== 0 && r.age !== 40],
      [{ name: names[2] }, (r) => r.name === names[2]],
      [{ name: { $in: names, $nin: names.slice(1) } }, (r) => r.name === names[0]],
    ];
    for (const address of ADDRESSES) {
      for (const [query, keep] of cases) {
        const expected = made.filter(keep).sort(byId);
        const page = await list(p, address, { name: mine, ...query, $sort: { id: 1 } });
        const what = `${address} ${JSON.stringify(query)}`;
        if (address === 'sockful') {
          assert.deepStrictEqual(page, expected, what);
        } else {
          assert.deepStrictEqual(page, { data: expected, total: expected.length, limit: DEFAULT_LIMIT, skip: 0 }, what);
        }
      }
    }

    // $sort both ways, $limit and $skip (total counts every match).
    const ascending = [...made].sort(byId);
    const route = await p.call('creature/list', { name: mine, $sort: { id: -1 } });
    assert.deepStrictEqual(ids(route.data), ids(ascending).reverse(), '$sort id -1');
    const window = await p.call('GET /creature', { name: mine, $sort: { id: 1 }, $limit: 2, $skip: 1 });
    assert.deepStrictEqual(window.data, ascending.slice(1, 3), '$limit 2 $skip 1');
    assert.equal(window.total, 5);
    assert.equal(window.limit, 2);
    assert.equal(window.skip, 1);
    assert.deepStrictEqual(
      await p.call('creature', { action: 'all', payload: { name: mine, $sort: { id: 1 }, $limit: 2, $skip: 3 } }),
      ascending.slice(3, 5),
      'sockful all with $limit and $skip',
    );

    // Paging by age descending (with a tie) through next/$after gives the unpaged order.
    const sort = { age: -1 };
    const whole = await p.call('creature/list', { name: mine, $sort: sort });
    assert.equal(whole.next, undefined, 'a page shorter than its limit has no next');
    assert.deepStrictEqual(whole.data.map((r) => r.age), [40, 20, 20, 10, 0], '$sort age -1');
    for (const address of ['route', 'rest']) {
      const seen = [];
      let after;
      for (let pages = 0; ; pages++) {
        assert.ok(pages < 5, `${address}: paging ends`);
        const query = { name: mine, $sort: sort, $limit: 2 };
        if (after !== undefined) {
          query.$after = after;
        }
        const page = await list(p, address, query);
        assert.equal(page.total, 5, `${address}: total on every page`);
        assert.ok(page.data.length <= 2);
        seen.push(...page.data);
        if (page.next === undefined) {
          assert.ok(page.data.length < 2, `${address}: the last page (5 records, 2 a page) is not full`);
          break;
        }
        assert.equal(typeof page.next, 'string', `${address}: next is a cursor`);
        assert.equal(page.data.length, 2, `${address}: only a full page has a next`);
        after = page.next;
      }
      assert.deepStrictEqual(seen, whole.data, `${address}: the pages in order are the unpaged list`);
    }
  });
}

// ---------------------------------------------------------------------------------------------
// Children: songs under albums

for (const kind of KINDS) {
  suite.test(`${kind} children: create under an album three ways, list its songs, missing parent, cascade`, async (t) => {
    const p = await peer(t, kind);
    const listener = await peer(t, otherKind(kind));
    const title = tagged(`${kind}-album`);
    const album = await p.call('album/create', { title });
    assertRecord(album, { title }, 1, 'album');
    const other = await p.call('POST /album', { title: `${title}-other` });
    assertRecord(other, { title: `${title}-other` }, 1, 'other album');

    const s1 = await p.call(`POST /album/${album.id}/song`, { title: 's1' });
    assertRecord(s1, { album_id: album.id, title: 's1' }, 1, 'POST /album/:id/song');
    const s2 = await p.call('album', { action: 'createSong', payload: { id: album.id, title: 's2' } });
    assertRecord(s2, { album_id: album.id, title: 's2' }, 1, 'sockful createSong');
    const s3 = await p.call('song/create', { album_id: album.id, title: 's3' });
    assertRecord(s3, { album_id: album.id, title: 's3' }, 1, 'song/create with album_id');
    // The path's album wins over one in the body.
    const elsewhere = await p.call(`POST /album/${other.id}/song`, { title: 'o1', album_id: album.id });
    assertRecord(elsewhere, { album_id: other.id, title: 'o1' }, 1, 'song of the other album');

    const songs = [s1, s2, s3];
    const query = { $sort: { id: 1 } };
    assert.deepStrictEqual(await p.call(`GET /album/${album.id}/song`, query), { data: songs, total: 3, limit: DEFAULT_LIMIT, skip: 0 }, "GET /album/:id/song: the album's songs only");
    assert.deepStrictEqual(await p.call('song/list', { album_id: album.id, ...query }), { data: songs, total: 3, limit: DEFAULT_LIMIT, skip: 0 }, 'song/list by album_id');
    assert.deepStrictEqual(await p.call(`GET /album/${other.id}/song`, query), { data: [elsewhere], total: 1, limit: DEFAULT_LIMIT, skip: 0 }, "the other album's songs");
    assert.deepStrictEqual(await p.call('song/get', { id: s2.id }), s2);

    // A parent that does not exist (any more).
    const gone = await p.call('album/create', { title: `${title}-gone` });
    await p.call('album/destroy', { id: gone.id });
    await assertNotFound(p.call(`POST /album/${gone.id}/song`, { title: 'x' }), 'album', gone.id, 'POST under a missing album');
    await assertNotFound(p.call('album', { action: 'createSong', payload: { id: gone.id, title: 'x' } }), 'album', gone.id, 'createSong under a missing album');
    await assertNotFound(p.call('song/create', { album_id: gone.id, title: 'x' }), 'album', gone.id, 'song/create with a missing album_id');
    await assertNotFound(p.call(`GET /album/${gone.id}/song`, {}), 'album', gone.id, 'GET the songs of a missing album');
    assert.deepStrictEqual(await p.call('song/list', { album_id: gone.id }), { data: [], total: 0, limit: DEFAULT_LIMIT, skip: 0 }, 'no song was created under the missing album');

    // Destroying the album destroys its songs and announces each.
    const songEvents = await listener.subscribe('song');
    const albumEvents = await listener.subscribe(`album/${album.id}`);
    const s1Events = await listener.subscribe(`song/${s1.id}`);
    assert.deepStrictEqual(await p.call(`DELETE /album/${album.id}`), album, 'DELETE /album/:id returns the album');
    for (const song of songs) {
      await eventArrives(songEvents, song.id, 'destroyed', `song ${song.title}`);
      assert.deepStrictEqual(eventsFor(songEvents, song.id), [{ event: 'destroyed', data: song }], `song channel: ${song.title} destroyed once`);
      await assertNotFound(p.call('song/get', { id: song.id }), 'song', song.id, `${song.title} after the cascade`);
    }
    await eventArrives(albumEvents, album.id, 'destroyed', 'album/<id>');
    assert.deepStrictEqual(albumEvents, [{ event: 'destroyed', data: album }], 'album/<id>: destroyed');
    await eventArrives(s1Events, s1.id, 'destroyed', 'song/<id>');
    assert.deepStrictEqual(s1Events, [{ event: 'destroyed', data: s1 }], 'song/<id>: destroyed');
    assert.deepStrictEqual(eventsFor(songEvents, elsewhere.id), [], "the other album's song is not announced");
    await assertNotFound(p.call('album/get', { id: album.id }), 'album', album.id, 'the album after destroy');
    await assertNotFound(p.call(`GET /album/${album.id}/song`, {}), 'album', album.id, 'its songs after destroy');
    assert.deepStrictEqual(await p.call('song/list', { album_id: album.id }), { data: [], total: 0, limit: DEFAULT_LIMIT, skip: 0 }, 'no song of the album is left');
    assert.deepStrictEqual(await p.call('song/get', { id: elsewhere.id }), elsewhere, "the other album's song stays");
  });
}

// ---------------------------------------------------------------------------------------------
// Live change events

for (const kind of KINDS) {
  suite.test(`${kind} writes are announced on creature and creature/<id> to v20, v14 and CTProto subscribers`, async (t) => {
    const writer = await peer(t, kind);
    const listeners = await Promise.all(KINDS.map((k) => peer(t, k)));
    const all = await Promise.all(listeners.map((l) => l.subscribe('creature')));
    const name = tagged(`${kind}-events`);

    const created = await writer.call('POST /creature', { name, age: 1 });
    await Promise.all(all.map((m, i) => eventArrives(m, created.id, 'created', `${listeners[i].kind} on creature`)));
    const one = await Promise.all(listeners.map((l) => l.subscribe(`creature/${created.id}`)));

    const updated = await writer.call('creature/update', { id: created.id, version: 1, name, age: 2 });
    const patched = await writer.call(`PATCH /creature/${created.id}`, { version: 2, age: 3 });
    // Refused writes announce nothing.
    assert.equal((await replyError(writer.call('creature/patch', { id: created.id, version: 2, age: 4 }), 'stale patch')).name, 'Conflict');
    assertValidation(await replyError(writer.call('creature/patch', { id: created.id, version: 3, age: -4 }), 'invalid patch'), [{ attribute: 'minimum', property: 'age', expected: 0, actual: -4 }], 'invalid patch');
    assert.equal((await replyError(writer.call('POST /creature', { age: 5 }), 'invalid create')).name, 'ValidationError');
    const patchedAgain = await writer.call('creature', { action: 'patch', payload: { id: created.id, version: 3, name: `${name}!` } });
    const destroyed = await writer.call('creature', { action: 'destroy', payload: created.id });

    const expectedAll = [
      { event: 'created', data: created },
      { event: 'updated', data: updated },
      { event: 'patched', data: patched },
      { event: 'patched', data: patchedAgain },
      { event: 'destroyed', data: destroyed },
    ];
    for (const [i, listener] of listeners.entries()) {
      const who = `${listener.kind} listener`;
      await eventArrives(all[i], created.id, 'destroyed', `${who} on creature`);
      await eventArrives(one[i], created.id, 'destroyed', `${who} on creature/<id>`);
      assert.deepStrictEqual(eventsFor(all[i], created.id), expectedAll, `${who}: the events on creature, in order, with the records the writer got`);
      assert.deepStrictEqual(one[i], expectedAll.slice(1), `${who}: the events on creature/<id> (subscribed after the create)`);
      // The client handed over exactly what came on the wire.
      assert.deepStrictEqual(eventsFor(listener.wirePublications('creature'), created.id), expectedAll, `${who}: the wire publications on creature`);
      assert.deepStrictEqual(listener.wirePublications(`creature/${created.id}`), expectedAll.slice(1), `${who}: the wire publications on creature/<id>`);
    }
  });
}

// ---------------------------------------------------------------------------------------------
// Optimistic concurrency

for (const kind of KINDS) {
  suite.test(`${kind} concurrent patches with the same version: exactly one succeeds, the others get Conflict`, async (t) => {
    const peers = await Promise.all(ADDRESSES.map(() => peer(t, kind)));
    const listener = await peer(t, otherKind(kind));
    const name = tagged(`${kind}-race`);
    const created = await peers[0].call('creature/create', { name, age: 0 });
    const events = await listener.subscribe(`creature/${created.id}`);
    // Three connections patch version 1 at once, each through another address.
    const outcomes = await Promise.allSettled(
      ADDRESSES.map((address, i) => op(peers[i], address, 'patch', created.id, { version: 1, age: i + 1 })),
    );
    const won = outcomes.filter((o) => o.status === 'fulfilled');
    const lost = outcomes.filter((o) => o.status === 'rejected');
    assert.equal(won.length, 1, `exactly one patch succeeds: ${JSON.stringify(outcomes.map((o) => o.value || (o.reason && o.reason.body) || String(o.reason)))}`);
    for (const { reason } of lost) {
      assert.ok(reason instanceof ReplyError, `a losing patch gets an error reply, not ${reason}`);
      assert.equal(reason.name, 'Conflict', JSON.stringify(reason.body));
    }
    const winner = won[0].value;
    assertNext(winner, created, { name, age: winner.age }, 'the winning patch');
    assert.deepStrictEqual(await peers[1].call('creature/get', { id: created.id }), winner, 'the store holds the winner');
    // Only the winner is announced: a later write's event comes right after it.
    const destroyed = await peers[2].call('creature/destroy', { id: created.id });
    await eventArrives(events, created.id, 'destroyed', 'creature/<id>');
    assert.deepStrictEqual(events, [{ event: 'patched', data: winner }, { event: 'destroyed', data: destroyed }]);
  });
}

suite.test('v20, v14 and CTProto racing: one patch per version wins, round after round', async (t) => {
  const peers = await Promise.all([...KINDS, ...KINDS].map((kind) => peer(t, kind)));
  const name = tagged('mixed-race');
  let current = await peers[0].call('creature/create', { name, age: 0 });
  for (let round = 1; round <= 5; round++) {
    const outcomes = await Promise.allSettled(
      peers.map((p, i) => p.call('creature/patch', { id: current.id, version: current.version, age: round * 10 + i })),
    );
    const won = outcomes.filter((o) => o.status === 'fulfilled');
    assert.equal(won.length, 1, `round ${round}: exactly one of ${peers.length} patches succeeds`);
    for (const o of outcomes.filter((x) => x.status === 'rejected')) {
      assert.equal(o.reason.name, 'Conflict', `round ${round}: ${o.reason.body ? JSON.stringify(o.reason.body) : o.reason}`);
    }
    assertNext(won[0].value, current, { name, age: won[0].value.age }, `round ${round}`);
    current = won[0].value;
  }
  assert.equal(current.version, 6);
  assert.deepStrictEqual(await peers[5].call('creature/get', { id: current.id }), current);
});

// Three peers (v20, v14, CTProto) send patches for versions 1..15 of a fresh record without
// waiting for the replies, while `listener` watches creature/<id>. Returns the committed records
// in version order and the listener's events, in arrival order, once all have arrived.
async function pipelinedPatches(peers, listener, name) {
  const created = await peers[0].call('creature/create', { name, age: 0 });
  const events = await listener.subscribe(`creature/${created.id}`);
  const attempts = peers.flatMap((p, i) => Array.from({ length: 15 }, (_, v) => p.call('creature/patch', { id: created.id, version: v + 1, age: i * 100 + v })));
  const outcomes = await Promise.allSettled(attempts);
  for (const o of outcomes.filter((x) => x.status === 'rejected')) {
    assert.equal(o.reason.name, 'Conflict', o.reason.body ? JSON.stringify(o.reason.body) : String(o.reason));
  }
  const won = outcomes.filter((o) => o.status === 'fulfilled').map((o) => o.value).sort((a, b) => a.version - b.version);
  assert.ok(won.length > 0, 'some patch succeeds');
  assert.deepStrictEqual(won.map((r) => r.version), won.map((_, i) => i + 2), 'each version is reached by exactly one patch');
  assert.deepStrictEqual(await peers[1].call('creature/get', { id: created.id }), won[won.length - 1], 'the store holds the last winner');
  await waitFor(() => events.length >= won.length, 4000, () => `${won.length} patched events (got ${events.length})`);
  await sleep(50);
  return { won, events, attempts: attempts.length };
}

const versionOrder = (events) => [...events].sort((a, b) => a.data.version - b.data.version);

suite.test('pipelined patches from v20, v14 and CTProto: each version is won once and announced once', async (t) => {
  const peers = await Promise.all(KINDS.map((kind) => peer(t, kind)));
  const listener = await peer(t, 'v20');
  const { won, events, attempts } = await pipelinedPatches(peers, listener, tagged('pipelined'));
  assert.deepStrictEqual(versionOrder(events), won.map((data) => ({ event: 'patched', data })), 'one event per committed patch, with its record');
  t.note(`${won.length} of ${attempts} patches committed`);
});

// ---------------------------------------------------------------------------------------------
// Validation errors

for (const kind of KINDS) {
  suite.test(`${kind} validation errors arrive as {name: "ValidationError", message, errors: [{attribute, property, expected, actual, message}]}`, async (t) => {
    const p = await peer(t, kind);
    const name = tagged(`${kind}-invalid`);
    const checks = [
      ['route', 'create', [{ age: -1 }], [
        { attribute: 'minimum', property: 'age', expected: 0, actual: -1 },
        { attribute: 'required', property: 'name', expected: true, actual: null },
      ]],
      ['rest', 'create', [{ name: 5, colour: 'red' }], [
        { attribute: 'type', property: 'name', expected: 'string', actual: 5 },
        { attribute: 'additionalProperties', property: 'colour', expected: false, actual: 'red' },
      ]],
      ['sockful', 'create', [{ name, age: 1.5 }], [
        { attribute: 'type', property: 'age', expected: 'integer', actual: 1.5 },
      ]],
    ];
    for (const [address, operation, args, expected] of checks) {
      const err = await replyError(op(p, address, operation, ...args), `${address} ${operation}`);
      assertValidation(err, expected, `${address} ${operation} ${JSON.stringify(args)}`);
      if (kind === 'ctproto') {
        // CTProto carries the message as `error`, as its error frames do.
        assert.deepStrictEqual(Object.keys(err.wire).sort(), ['error', 'errors', 'name']);
      } else {
        assert.deepStrictEqual(Object.keys(err.wire).sort(), ['errors', 'message', 'name']);
      }
    }
    assert.deepStrictEqual(await p.call('creature/list', { name }), { data: [], total: 0, limit: DEFAULT_LIMIT, skip: 0 }, 'no invalid record was stored');

    // Updates are checked whole, patches by what they change; neither is stored.
    const created = await p.call('creature/create', { name, age: 1 });
    for (const address of ADDRESSES) {
      assertValidation(
        await replyError(op(p, address, 'update', created.id, { version: 1, age: 2 }), `${address} update`),
        [{ attribute: 'required', property: 'name', expected: true, actual: null }],
        `${address} update without name`,
      );
      assertValidation(
        await replyError(op(p, address, 'patch', created.id, { version: 1, age: -3 }), `${address} patch`),
        [{ attribute: 'minimum', property: 'age', expected: 0, actual: -3 }],
        `${address} patch to a negative age`,
      );
    }
    assert.deepStrictEqual(await p.call('creature/get', { id: created.id }), created, 'the record is unchanged');
  });
}

// ---------------------------------------------------------------------------------------------
// Resource channels are the server's

for (const kind of KINDS) {
  suite.test(`${kind} publishing on creature, creature/<id> and song is refused and reaches nobody`, async (t) => {
    const p = await peer(t, kind);
    const listener = await peer(t, otherKind(kind));
    const name = tagged(`${kind}-publish`);
    const created = await p.call('creature/create', { name });
    const chat = `chat-${name}`;
    const channels = ['creature', `creature/${created.id}`, 'song', chat];
    const [all, one, songs, chatMessages] = await Promise.all(channels.map((ch) => listener.subscribe(ch)));
    const fake = { event: 'destroyed', data: { ...created, fake: name } };
    for (const channel of channels.slice(0, 3)) {
      const err = await replyError(p.publish(channel, fake), `publish on ${channel}`);
      assert.equal(err.name, 'Forbidden', `publish on ${channel}: ${JSON.stringify(err.body)}`);
      if (p.transmitPublish) {
        p.transmitPublish(channel, fake);
      }
    }
    // The same client may publish elsewhere (control), and the server still announces.
    assert.equal(await p.publish(chat, { hello: name }), undefined, 'publishing on an ordinary channel works');
    const patched = await p.call('creature/patch', { id: created.id, version: 1, age: 5 });
    await waitFor(() => chatMessages.length === 1, 3000, 'the chat message');
    assert.deepStrictEqual(chatMessages, [{ hello: name }]);
    await eventArrives(one, created.id, 'patched', 'creature/<id>');
    await eventArrives(all, created.id, 'patched', 'creature');
    // Allow a stray transmitted publication to arrive after the server's own.
    await sleep(100);
    assert.deepStrictEqual(one, [{ event: 'patched', data: patched }], 'creature/<id> carries the server\'s event only');
    assert.deepStrictEqual(eventsFor(all, created.id), [{ event: 'patched', data: patched }], 'creature carries the server\'s event only');
    const leaked = [...all, ...songs].filter((m) => m && m.data && m.data.fake === name);
    assert.deepStrictEqual(leaked, [], 'no client publication reached a resource channel');
  });
}

// ---------------------------------------------------------------------------------------------
// Paging past records without the sort key, cursors and several sort keys, and the order of
// change events under concurrent writes.

for (const direction of [1, -1]) {
  suite.test(`list: paging with $sort {age: ${direction}} through next/$after reaches the records without an age`, async (t) => {
    const p = await peer(t, 'v20');
    const tag = tagged('nulls');
    const made = [];
    for (const [i, age] of [2, undefined, undefined, 5].entries()) {
      made.push(await p.call('creature/create', age === undefined ? { name: `${tag}-${i}` } : { name: `${tag}-${i}`, age }));
    }
    const query = { name: { $in: made.map((r) => r.name) }, $sort: { age: direction } };
    const whole = await p.call('creature/list', query);
    assert.equal(whole.data.length, 4);
    const seen = [];
    let after;
    for (let pages = 0; pages < 6; pages++) {
      const page = await p.call('creature/list', { ...query, $limit: 1, ...(after === undefined ? {} : { $after: after }) });
      seen.push(...page.data);
      if (page.next === undefined) {
        break;
      }
      after = page.next;
    }
    assert.deepStrictEqual(seen.map((r) => r.id), whole.data.map((r) => r.id), 'the pages in order are the unpaged list');
  });
}

suite.test('pipelined patches from v20, v14 and CTProto are announced in version order (10 rounds)', async (t) => {
  const peers = await Promise.all(KINDS.map((kind) => peer(t, kind)));
  const listener = await peer(t, 'v20');
  for (let round = 1; round <= 10; round++) {
    const { events } = await pipelinedPatches(peers, listener, tagged('ordered'));
    const versions = events.map((e) => e.data.version);
    assert.deepStrictEqual(versions, [...versions].sort((a, b) => a - b), `round ${round}: creature/<id> events in commit order`);
  }
}, { timeout: 20000 });

suite.test('list: no cursor is offered for a two-key $sort, and $skip pages it instead', async (t) => {
  const p = await peer(t, 'v20');
  const tag = tagged('twokeys');
  for (const i of [0, 1, 2]) {
    await p.call('creature/create', { name: `${tag}-${i}`, age: 1 });
  }
  const query = { name: { $in: [0, 1, 2].map((i) => `${tag}-${i}`) }, $sort: { age: 1, name: -1 }, $limit: 2 };
  const first = await p.call('creature/list', query);
  assert.deepStrictEqual(first.data.map((r) => r.name), [`${tag}-2`, `${tag}-1`]);
  assert.equal(first.next, undefined, 'a cursor resumes after one sort key only');
  const second = await p.call('creature/list', { ...query, $skip: 2 });
  assert.deepStrictEqual(second.data.map((r) => r.name), [`${tag}-0`], 'the rest of the list');
});

// ---------------------------------------------------------------------------------------------
// Remote methods

for (const kind of KINDS) {
  suite.test(`${kind} remote method: as creature/<name> and as a sockful action`, async (t) => {
    if (!remoteMethod) {
      t.skip('no --remote-method given');
    }
    const p = await peer(t, kind);
    const text = `shout ${kind} ünïcode`;
    const expected = { resource: 'creature', text: text.toUpperCase() };
    assert.deepStrictEqual(await p.call(`creature/${remoteMethod}`, { text }), expected, 'route name');
    assert.deepStrictEqual(await p.call('creature', { action: remoteMethod, payload: { text } }), expected, 'sockful action');
    for (const [what, call] of [
      ['route name', () => p.call(`creature/${remoteMethod}`, { text: 7 })],
      ['sockful action', () => p.call('creature', { action: remoteMethod, payload: { text: 7 } })],
    ]) {
      const err = await replyError(call(), what);
      assert.deepStrictEqual(err.body, { name: 'ShoutError', message: 'nothing to shout', got: { text: 7 } }, `${what}: the remote's error with its fields`);
    }
  });
}

suite.run().then(
  (failures) => process.exit(failures === 0 ? 0 : 1),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
