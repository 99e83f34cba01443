import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, readdirSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { MemoryLevel } from 'memory-level';
import { afterAll, describe, expect, it } from 'vitest';
import { KEYS, type ChangeEvent } from '../../src/store/cluster-store.js';
import { LevelStore, type LevelDatabase } from '../../src/store/level-store.js';
import { SCHEMA_VERSION, type NodeRecord } from '../../src/store/records.js';
import { scratchDir } from '../helpers/openssl.js';

const scratch = scratchDir('muster-store-');
afterAll(() => scratch.cleanup());

function node(id: string, overrides: Partial<NodeRecord> = {}): NodeRecord {
  return {
    schema: SCHEMA_VERSION,
    id,
    role: 'worker',
    hostname: 'h',
    labels: {},
    createdAt: 1,
    lastSeenAt: 1,
    certSerial: `S${id}`,
    certNotAfter: 2,
    certRole: 'worker',
    removed: false,
    ...overrides,
  };
}

const put = (key: string, value: unknown, version = 0) => ({ compares: [{ key, version }], puts: [{ key, value }], deletes: [] });
const fresh = (): string => scratch.path(`db-${Math.random().toString(36).slice(2)}`);
/** Every file of a folder and the SHA-256 of its bytes. */
const filesOf = (dir: string): Record<string, string> =>
  Object.fromEntries(
    readdirSync(dir).map((f) => [
      f,
      createHash('sha256')
        .update(readFileSync(join(dir, f)))
        .digest('hex'),
    ]),
  );

describe('LevelStore', () => {
  it('versions every record with the store revision, and commits only when the compared versions hold', async () => {
    const store = await LevelStore.open(new MemoryLevel<string, string>() as unknown as LevelDatabase, 'memory');
    expect(await store.commit(put(KEYS.nodes.ref('a').key, node('a')))).toBe(true);
    const a = (await store.get(KEYS.nodes.ref('a')))!;
    expect(a.version).toBe(1);
    expect(await store.commit(put(KEYS.nodes.ref('a').key, node('a', { hostname: 'x' })))).toBe(false); // expected absent
    expect(await store.commit(put(KEYS.nodes.ref('a').key, node('a', { hostname: 'x' }), a.version))).toBe(true);
    expect(await store.commit(put(KEYS.nodes.ref('a').key, node('a', { hostname: 'y' }), a.version))).toBe(false); // stale
    expect((await store.get(KEYS.nodes.ref('a')))!).toEqual({ value: node('a', { hostname: 'x' }), version: 2 });
    expect(await store.commit({ compares: [{ key: KEYS.nodes.ref('a').key, version: 2 }], puts: [], deletes: [KEYS.nodes.ref('a').key] })).toBe(true);
    expect(await store.get(KEYS.nodes.ref('a'))).toBeUndefined();
    await store.close();
    await store.close(); // idempotent
  });

  it('keeps the records it read or wrote (issue 31): a record this process wrote is read without the database, one it did not is read once; each read is a fresh object', async () => {
    const memory = new MemoryLevel<string, string>();
    const db = memory as unknown as LevelDatabase;
    const realGet = db.get.bind(db) as (key: string) => Promise<string | undefined>;
    let gets = 0;
    Object.assign(db, {
      get: (key: string) => {
        gets += 1;
        return realGet(key);
      },
    });
    const store = await LevelStore.open(db, 'memory');
    const a = KEYS.nodes.ref('a');
    expect(await store.commit(put(a.key, node('a')))).toBe(true);
    const afterWrite = gets;
    const first = (await store.get(a))!;
    const second = (await store.get(a))!;
    expect(gets).toBe(afterWrite);
    expect(second).toEqual(first);
    first.value.hostname = 'changed by a caller';
    expect((await store.get(a))!.value.hostname).toBe('h');
    // Written before this store opened (another process, an older muster): one database read, then none.
    await memory.put(KEYS.nodes.ref('b').key, JSON.stringify({ r: 1, v: node('b') }));
    expect((await store.get(KEYS.nodes.ref('b')))!.value.id).toBe('b');
    expect((await store.get(KEYS.nodes.ref('b')))!.value.id).toBe('b');
    expect(gets).toBe(afterWrite + 1);
    // A deletion is seen at once.
    expect(await store.commit({ compares: [], puts: [], deletes: [a.key] })).toBe(true);
    expect(await store.get(a)).toBeUndefined();
    await store.close();
  });

  it('a read that raced a write never leaves the older record behind in what it keeps', async () => {
    const memory = new MemoryLevel<string, string>();
    const db = memory as unknown as LevelDatabase;
    const ref = KEYS.nodes.ref('a');
    await memory.put(ref.key, JSON.stringify({ r: 1, v: node('a') }));
    await memory.put('~revision', '1');
    const realGet = db.get.bind(db) as (key: string) => Promise<string | undefined>;
    let gating = true;
    let release = (): void => undefined;
    const gate = new Promise<void>((resolve) => (release = resolve));
    // The first read of the record gets the old text, then is held until the write below has landed.
    Object.assign(db, {
      get: async (key: string) => {
        const held = gating && key === ref.key;
        gating = gating && !held;
        const text = await realGet(key);
        if (held) await gate;
        return text;
      },
    });
    const store = await LevelStore.open(db, 'memory');
    const racing = store.get(ref);
    expect(await store.commit(put(ref.key, node('a', { hostname: 'new' }), 1))).toBe(true);
    release();
    expect((await racing)!.value.hostname).toBe('h'); // what it read, as before the cache
    expect((await store.get(ref))!.value.hostname).toBe('new');
    await store.close();
  });

  it('of commits racing on one key, in one group or across groups, exactly one wins each round (versions known from earlier groups included)', async () => {
    const store = await LevelStore.open(new MemoryLevel<string, string>() as unknown as LevelDatabase, 'memory');
    const key = KEYS.nodes.ref('race').key;
    for (let round = 0; round < 5; round++) {
      const results = await Promise.all(Array.from({ length: 40 }, (_, i) => store.commit(put(key, node('race', { hostname: `h${round}-${i}` }), round))));
      expect(results.filter(Boolean)).toHaveLength(1);
      expect((await store.get(KEYS.nodes.ref('race')))!.version).toBe(round + 1);
    }
    expect(await store.commit(put(key, node('race'), 3))).toBe(false); // a version long gone
    await store.close();
  });

  it('lists a space in key order, paged', async () => {
    const store = await LevelStore.open(new MemoryLevel<string, string>() as unknown as LevelDatabase, 'memory');
    for (const id of ['c', 'a', 'b', 'd']) await store.commit(put(KEYS.nodes.ref(id).key, node(id)));
    await store.commit(
      put(KEYS.certificates.ref('S1').key, {
        schema: SCHEMA_VERSION,
        serial: 'S1',
        subject: 'a',
        role: 'worker',
        kind: 'join',
        issuedAt: 1,
        notBefore: 1,
        notAfter: 2,
      }),
    );
    expect((await store.list(KEYS.nodes)).map((e) => e.id)).toEqual(['a', 'b', 'c', 'd']);
    expect((await store.list(KEYS.nodes, { limit: 2 })).map((e) => e.id)).toEqual(['a', 'b']);
    expect((await store.list(KEYS.nodes, { after: 'b', limit: 5 })).map((e) => e.id)).toEqual(['c', 'd']);
    await store.close();
  });

  it('refuses a record that does not match its schema on read (STATE_CORRUPT), and another version of muster by name', async () => {
    const db = new MemoryLevel<string, string>() as unknown as LevelDatabase;
    const store = await LevelStore.open(db, 'memory');
    await db.put(KEYS.nodes.ref('x').key, JSON.stringify({ r: 1, v: { id: 'x' } }));
    await db.put(KEYS.nodes.ref('y').key, JSON.stringify({ r: 1, v: { ...node('y'), schema: 1 } }));
    await expect(store.get(KEYS.nodes.ref('x'))).rejects.toMatchObject({ code: 'STATE_CORRUPT', message: expect.stringMatching(/does not match its schema/) });
    await expect(store.get(KEYS.nodes.ref('y'))).rejects.toMatchObject({ code: 'STATE_CORRUPT', message: expect.stringMatching(/another version of muster/) });
    await store.close();
  });

  it('tells watchers about every committed change under their prefix', async () => {
    const store = await LevelStore.open(new MemoryLevel<string, string>() as unknown as LevelDatabase, 'memory');
    const events: ChangeEvent[] = [];
    const stop = store.watch('nodes/', (event) => events.push(event));
    await store.commit(
      put(KEYS.certificates.ref('x').key, {
        schema: SCHEMA_VERSION,
        serial: 'x',
        subject: 'a',
        role: 'worker',
        kind: 'join',
        issuedAt: 1,
        notBefore: 1,
        notAfter: 2,
      }),
    ); // another prefix: not heard
    await store.commit(put(KEYS.nodes.ref('a').key, node('a')));
    await store.commit(put(KEYS.nodes.ref('b').key, node('b'), 7)); // fails: no event
    stop();
    await store.commit(put(KEYS.nodes.ref('c').key, node('c')));
    expect(events).toEqual([{ type: 'changes', changes: [{ key: 'nodes/a', value: node('a'), version: 2 }] }]);
    await store.close();
  });

  it('keeps everything across a reopen on disk', async () => {
    const dir = fresh();
    const first = await LevelStore.openDir(dir, { create: true });
    await first.commit(put(KEYS.nodes.ref('w1').key, node('w1')));
    await first.close();
    const second = await LevelStore.openDir(dir, { create: false });
    expect((await second.get(KEYS.nodes.ref('w1')))?.value).toEqual(node('w1'));
    expect(await second.commit(put(KEYS.nodes.ref('w2').key, node('w2')))).toBe(true);
    expect((await second.get(KEYS.nodes.ref('w2')))?.version).toBe(2); // the revision counter survived
    await second.close();
  });

  it('refuses a second opener of the same folder with a clear code', async () => {
    const dir = fresh();
    const first = await LevelStore.openDir(dir, { create: true });
    await expect(LevelStore.openDir(dir, { create: false })).rejects.toMatchObject({ code: 'STATE_CORRUPT', message: expect.stringMatching(/locked/) });
    await first.close();
  });

  it('never re-creates a missing or damaged store, and touches nothing while refusing it', async () => {
    const missing = fresh();
    await expect(LevelStore.openDir(missing, { create: false })).rejects.toMatchObject({ code: 'STATE_CORRUPT' });
    expect(() => statSync(missing)).toThrow();
    const dir = fresh();
    const store = await LevelStore.openDir(dir, { create: true });
    await store.close();
    rmSync(join(dir, 'CURRENT'));
    const before = readdirSync(dir).map((f) => [f, statSync(join(dir, f)).mtimeMs]);
    const error = await LevelStore.openDir(dir, { create: false }).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'STATE_CORRUPT', hint: expect.not.stringMatching(/init/) });
    expect(readdirSync(dir).map((f) => [f, statSync(join(dir, f)).mtimeMs])).toEqual(before);
  });

  it('refuses a store with a truncated table as STATE_CORRUPT before LevelDB opens it: every file stays byte-identical', async () => {
    const dir = fresh();
    const first = await LevelStore.openDir(dir, { create: true });
    for (let i = 0; i < 50; i++) await first.commit(put(KEYS.nodes.ref(`n${i}`).key, node(`n${i}`)));
    await first.close();
    await (await LevelStore.openDir(dir, { create: false })).close(); // reopening flushes the log into a table
    const table = readdirSync(dir).find((f) => /\.(ldb|sst)$/.test(f));
    expect(table).toBeDefined();
    const path = join(dir, table!);
    truncateSync(path, Math.floor(statSync(path).size / 2));
    const before = filesOf(dir);
    const error = await LevelStore.openDir(dir, { create: false }).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'STATE_CORRUPT', message: expect.stringContaining(`${table} is truncated`), hint: expect.stringMatching(/backup/) });
    expect(filesOf(dir)).toEqual(before);
  });

  it('refuses a store whose MANIFEST is damaged or whose table is missing, and opens one whose MANIFEST ends in a torn record', async () => {
    const dir = fresh();
    const first = await LevelStore.openDir(dir, { create: true });
    await first.commit(put(KEYS.nodes.ref('a').key, node('a')));
    await first.close();
    await (await LevelStore.openDir(dir, { create: false })).close();
    const manifest = join(dir, readFileSync(join(dir, 'CURRENT'), 'utf8').trim());
    const whole = readFileSync(manifest);
    const table = readdirSync(dir).find((f) => /\.(ldb|sst)$/.test(f))!;

    const flipped = Buffer.from(whole);
    flipped[10] = flipped[10]! ^ 0xff;
    writeFileSync(manifest, flipped);
    let before = filesOf(dir);
    await expect(LevelStore.openDir(dir, { create: false })).rejects.toMatchObject({ code: 'STATE_CORRUPT', message: expect.stringMatching(/checksum/) });
    expect(filesOf(dir)).toEqual(before);

    writeFileSync(manifest, whole);
    const tableBytes = readFileSync(join(dir, table));
    rmSync(join(dir, table));
    before = filesOf(dir);
    await expect(LevelStore.openDir(dir, { create: false })).rejects.toMatchObject({ code: 'STATE_CORRUPT', message: expect.stringMatching(/missing/) });
    expect(filesOf(dir)).toEqual(before);

    writeFileSync(join(dir, table), tableBytes);
    writeFileSync(manifest, Buffer.concat([whole, Buffer.from([1, 2, 3, 4, 200, 0, 1, 9])])); // a crash mid-append
    const store = await LevelStore.openDir(dir, { create: false });
    expect((await store.get(KEYS.nodes.ref('a')))?.value).toEqual(node('a'));
    await store.close();
  });

  it('refuses to create over an existing store', async () => {
    const dir = fresh();
    mkdirSync(dir);
    writeFileSync(join(dir, 'CURRENT'), 'MANIFEST-000001\n');
    await expect(LevelStore.openDir(dir, { create: true })).rejects.toMatchObject({ code: 'STATE_CORRUPT' });
  });

  it('group-commits concurrent commits, and close waits for every accepted one', async () => {
    const dir = fresh();
    const first = await LevelStore.openDir(dir, { create: true });
    const ids = Array.from({ length: 300 }, (_, i) => `w${String(i).padStart(3, '0')}`);
    const writes = ids.map((id) => first.commit(put(KEYS.nodes.ref(id).key, node(id))));
    const closing = first.close(); // before any commit has settled
    expect(await Promise.all(writes)).toEqual(ids.map(() => true));
    await closing;
    // Groups of at most 256: the commits share batches.
    expect(first.batches).toBeGreaterThanOrEqual(2);
    expect(first.batches).toBeLessThan(ids.length / 10);
    const second = await LevelStore.openDir(dir, { create: false });
    expect((await second.list(KEYS.nodes)).map((e) => e.id)).toEqual(ids);
    await second.close();
  });

  it('waits one turn of the event loop before a batch: commits made by separate callbacks of that turn share it', async () => {
    const store = await LevelStore.open(new MemoryLevel<string, string>() as unknown as LevelDatabase, 'memory');
    const ids = Array.from({ length: 10 }, (_, i) => `t${i}`);
    // Each commit from its own callback, as requests read from different sockets make them.
    const results = await Promise.all(
      ids.map((id) => new Promise<boolean>((resolve, reject) => setImmediate(() => store.commit(put(KEYS.nodes.ref(id).key, node(id))).then(resolve, reject)))),
    );
    expect(results).toEqual(ids.map(() => true));
    expect(store.batches).toBe(1);
    await store.close();
  });

  it('checks grouped commits in order: of two creations of one key in a batch, the second fails', async () => {
    const store = await LevelStore.open(new MemoryLevel<string, string>() as unknown as LevelDatabase, 'memory');
    const results = await Promise.all([store.commit(put('nodes/z', node('z'))), store.commit(put('nodes/z', node('z', { hostname: 'other' })))]);
    expect(results).toEqual([true, false]);
    expect((await store.get(KEYS.nodes.ref('z')))?.value.hostname).toBe('h');
    await store.close();
  });

  it('fails only the commit whose record cannot be encoded when commits share a batch', async () => {
    const store = await LevelStore.open(new MemoryLevel<string, string>() as unknown as LevelDatabase, 'memory');
    const bad = node('bad', { labels: { n: 1n } as unknown as Record<string, string> }); // JSON cannot encode a BigInt
    const results = await Promise.allSettled(['a', 'b', 'bad', 'c'].map((id) => store.commit(put(KEYS.nodes.ref(id).key, id === 'bad' ? bad : node(id)))));
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'fulfilled', 'rejected', 'fulfilled']);
    expect((await store.list(KEYS.nodes)).map((e) => e.id)).toEqual(['a', 'b', 'c']);
    await store.close();
  });
});
